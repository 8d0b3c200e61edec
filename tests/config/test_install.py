"""Production install (issue 16): the runtime lock that the README's deployment installs holds every
package the app needs and no test tool; the dev lock adds the test tools on top for `make test`."""

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def pins(name: str) -> dict[str, str]:
    """{canonical name: version} of a lock file's `name==version` lines (comments and -r skipped)."""
    found = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)==([^\s;]+)", line)
        assert match, f"{name}: {line!r} is not an exact pin"
        assert canonicalize_name(match[1]) not in found, f"{name}: {match[1]} is pinned twice"
        found[canonicalize_name(match[1])] = match[2]
    return found


def closure(requirements: list[str]) -> set[str]:
    """Every distribution the requirements pull in here, transitively (markers evaluated, no extras)."""
    todo = [req for req in map(Requirement, requirements) if not req.marker or req.marker.evaluate({"extra": ""})]
    seen, done = set(), set()
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        key = (name, frozenset(req.extras))
        if key in done:  # markers are evaluated when a requirement is queued
            continue
        done.add(key)
        seen.add(name)
        for sub in metadata.requires(req.name) or []:
            sub_req = Requirement(sub)
            if not sub_req.marker or sub_req.marker.evaluate({"extra": ""}) or any(
                sub_req.marker.evaluate({"extra": extra}) for extra in req.extras
            ):
                todo.append(sub_req)
    return seen


def test_runtime_lock_pins_every_runtime_package_and_no_dev_tool():
    """Deploy: the runtime lock pins every runtime package and no test or development tool."""
    runtime = pins("requirements.lock")
    needed = closure(PYPROJECT["project"]["dependencies"])
    assert needed - set(runtime) == set(), "runtime packages missing from requirements.lock"
    dev_tools = {canonicalize_name(Requirement(r).name) for r in PYPROJECT["project"]["optional-dependencies"]["dev"]}
    assert dev_tools & set(runtime) == set(), "test tools in the runtime lock"
    assert set(runtime) - needed == set(), "requirements.lock pins packages the app does not need"


def test_pyproject_pins_agree_with_the_locks():
    """Deploy: pyproject's pins and the locks agree."""
    runtime, dev = pins("requirements.lock"), pins("requirements-dev.lock")
    for spec in PYPROJECT["project"]["dependencies"]:
        req = Requirement(spec)
        assert str(req.specifier) == f"=={runtime[canonicalize_name(req.name)]}", spec
    for spec in PYPROJECT["project"]["optional-dependencies"]["dev"]:
        req = Requirement(spec)
        assert str(req.specifier) == f"=={dev[canonicalize_name(req.name)]}", spec


def test_dev_lock_builds_on_the_runtime_lock_without_repinning_it():
    """Deploy: the dev lock adds to the runtime lock and never pins a runtime package again."""
    text = (ROOT / "requirements-dev.lock").read_text()
    assert "-r requirements.lock" in text.splitlines()
    runtime, dev = pins("requirements.lock"), pins("requirements-dev.lock")
    assert set(runtime) & set(dev) == set()
    dev_needed = closure(PYPROJECT["project"]["optional-dependencies"]["dev"])
    assert dev_needed - set(runtime) - set(dev) == set(), "dev packages missing from requirements-dev.lock"


def test_the_readme_deployment_and_the_makefile_install_the_right_lock():
    """Deploy: the README's deployment and `make run` install the runtime lock; `make test` the dev lock."""
    readme = (ROOT / "README.md").read_text()
    deployment = readme[readme.index("## Running on PostgreSQL"):]
    assert "pip install -r requirements.lock" in deployment
    assert "requirements-dev.lock" not in deployment and ".[dev]" not in deployment
    makefile = (ROOT / "Makefile").read_text()
    assert "-r requirements.lock -e .\n" in makefile and "-r requirements-dev.lock -e \".[dev]\"" in makefile
    assert "run: install-runtime" in makefile and "test-sqlite: install\n" in makefile
