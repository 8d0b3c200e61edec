"""Reading a JSON data file that staff hand to a command (the catalog, the tax rates): every way a
file can be wrong is one error whose message says what to fix, never a traceback."""

import json
from pathlib import Path


def json_file_read(path: str | Path, *, what: str, max_bytes: int, error: type[Exception]):
    """The parsed content of the JSON file `path`, or `error` with a message naming `what` the
    file should be (for instance "a catalog"): unreadable, larger than `max_bytes`, not UTF-8 (the
    byte and line), not JSON (line and column), or nested deeper than Python's parser goes."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise error(f"Cannot read {path}: {exc.strerror}.") from None
    if len(raw) > max_bytes:
        raise error(f"{path} is {len(raw):,} bytes; {what} is at most {max_bytes:,}.")
    try:
        text = raw.decode("utf-8-sig")  # a BOM (some editors add one) is fine
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise error(f"{path} is not UTF-8 text: byte 0x{raw[exc.start]:02x} on line {line} cannot be read. "
                    "Save the file as UTF-8 and load it again.") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{path} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}).") from None
    except RecursionError:  # [[[[…]]]] deeper than Python's parser goes
        raise error(f"{path} is nested too deeply to be {what}.") from None
