"""Instance names compare the same way for every letter, on SQLite and PostgreSQL alike.

SQLite's `LOWER`/`LIKE` fold ASCII only, so `Ángel` and `ángel` were different names there and
the same on PostgreSQL. Instead of asking the database to fold, we store a key computed here:
Unicode NFKC (compatibility forms: full-width `ｒｏｓａ` is `rosa`), then full case folding
(`Straße` is `strasse`, `Σ`/`ς`/`σ` are one letter), then NFKC again. Names themselves are kept
as typed, in NFC (composed) form, so `Á` typed as `A` + combining accent is the same name.
"""

from __future__ import annotations

import unicodedata


def normalize_name(name: str) -> str:
    """The name as stored: NFC, surrounding whitespace removed."""
    return unicodedata.normalize("NFC", name.strip())


def name_key(name: str) -> str:
    """The case- and form-insensitive key names are unique by and looked up by."""
    folded = unicodedata.normalize("NFKC", normalize_name(name)).casefold()
    return unicodedata.normalize("NFKC", folded)
