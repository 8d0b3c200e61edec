"""Words for the customer: the one pluralising helper ("1 extra property", "2 extra properties")."""


def counted(count: int, singular: str, plural: str | None = None) -> str:
    """`count` and the noun it agrees with, thousands separated.

    >>> counted(1, "extra property"), counted(2, "extra property"), counted(1500, "session")
    ('1 extra property', '2 extra properties', '1,500 sessions')
    """
    return f"{count:,} {singular if count == 1 else plural or plural_of(singular)}"


def plural_of(noun: str) -> str:
    """'property' -> 'properties', 'day' -> 'days', 'session' -> 'sessions' (English, regular nouns)."""
    if noun.endswith("y") and noun[-2:-1] not in ("a", "e", "i", "o", "u"):
        return noun[:-1] + "ies"
    return noun + "s"
