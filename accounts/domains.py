"""A property's domain (issue 28): a host name only, stored lower-cased in its ASCII form.

What the owner types may start with http:// or https:// and end with one slash (pasted from the
address bar); anything else beyond the host (a path, a query, a port, user info), a control or
bidirectional-formatting character (a right-to-left override makes a list show another name),
markup, an emoji or an empty label (`a..com`) is refused with the reason. International names
are checked and converted by the idna package (IDNA 2008 with UTS 46 mapping) and stored as
punycode (`bücher.example` -> `xn--bcher-kva.example`), so two names that look alike never
pass for one another in a list.
"""

from __future__ import annotations

import re
import unicodedata

import idna

MAX_LENGTH = 253
LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
NOT_IN_A_HOST = set("/?#@:\\<>\"'%&=;,[]{}|^`!$()*+~")


class DomainError(ValueError):
    """The reason a domain is refused, in words for the owner."""


def domain_clean(text: str) -> str:
    """`text` as a stored domain, or DomainError.

    "  https://Example.COM/ " -> "example.com"; "bücher.example" -> "xn--bcher-kva.example";
    "x.com/path?q=1", "a..com", "😀.com", "evil\u202emoc.com" -> DomainError.
    """
    host = text.strip()
    lowered = host.lower()
    for scheme in ("https://", "http://"):
        if lowered.startswith(scheme):
            host = host[len(scheme):]
            break
    host = host.removesuffix("/")
    if not host:
        raise DomainError("Enter the website's domain, like example.com.")
    if any(unicodedata.category(ch)[0] in ("C", "Z") for ch in host):
        raise DomainError("A domain cannot contain spaces, control characters or text-direction marks.")
    if NOT_IN_A_HOST & set(host):
        raise DomainError("Enter only the host name, like example.com: no path, query, port or other characters.")
    if ".." in host or host.startswith(".") or host.endswith("."):
        raise DomainError("A domain cannot have an empty part between dots, like a..com.")
    try:
        ascii_host = idna.encode(host, uts46=True).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError) as exc:
        raise DomainError(f"{host!r} is not a valid domain name: use letters, digits and hyphens (letters of any "
                          f"language are fine; emoji and symbols are not).") from exc
    labels = ascii_host.split(".")
    if len(labels) < 2:
        raise DomainError("Enter the full domain, like example.com.")
    if len(ascii_host) > MAX_LENGTH or not all(LABEL.match(label) for label in labels) or labels[-1].isdigit():
        raise DomainError(f"{host!r} is not a valid domain name.")
    return ascii_host
