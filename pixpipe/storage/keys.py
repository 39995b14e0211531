"""The key rules (PRODUCT.md §2) and where pixpipe's own records live in a store.

An original's key is 1–1024 bytes of UTF-8: no leading ``/``, no empty, ``.`` or ``..``
segment, no backslash, no control character. Everything that names an object derives from it
here or in ``recipe.Variant.key_for`` (variants), nowhere else.
"""

from __future__ import annotations

import re

MAX_KEY_BYTES = 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# obstore's local store stages writes as `{name}#{n}` and refuses keys that look like that.
_STAGING = re.compile(r"#\d+$")


class BadKey(ValueError):
    """A key that breaks the key rules; a client error (4xx / CLI usage error)."""


def validate_key(key: str) -> str:
    """Return ``key`` if it follows the key rules (PRODUCT.md §2), else raise ``BadKey``."""
    if not isinstance(key, str):
        raise BadKey(f"key must be a string (got {type(key).__name__})")
    size = len(key.encode("utf-8", "surrogatepass"))
    if not 1 <= size <= MAX_KEY_BYTES:
        raise BadKey(f"key must be 1-{MAX_KEY_BYTES} bytes of UTF-8 (got {size} bytes)")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise BadKey(f"key must be valid UTF-8 (got {key!r})") from None
    if key.startswith("/"):
        raise BadKey(f"key must not start with '/' (got {key!r})")
    if "\\" in key:
        raise BadKey(f"key must not contain a backslash (got {key!r})")
    if match := _CONTROL.search(key):
        raise BadKey(f"key must not contain control characters (got {match.group()!r} in {key!r})")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            what = "an empty" if not segment else f"a {segment!r}"
            raise BadKey(f"key must not contain {what} path segment (got {key!r})")
        if _STAGING.search(segment):
            raise BadKey(f"key segments must not end in '#' + digits (got {key!r})")
    return key


def error_key(key: str) -> str:
    """Where a quarantined original's error record lives: ``{key}.error.json``."""
    return f"{key}.error.json"


def state_key(key: str) -> str:
    """Where a runtime without a KV bucket (Lambda) keeps an original's state, in the
    variants store."""
    return f".pixpipe/state/{key}.json"


def dead_letter_key(role: str, sequence: int) -> str:
    """Where a message a role gave up on is kept, in the quarantine store."""
    return f"_deadletters/{role}/{sequence:012d}.json"


__all__ = ["MAX_KEY_BYTES", "BadKey", "dead_letter_key", "error_key", "state_key", "validate_key"]
