"""The key rules (PRODUCT.md §2) and where pixpipe's own records live in a store.

An original's key is 1–1024 bytes of UTF-8: no leading ``/``, no empty, ``.`` or ``..``
segment, no backslash, no control character. Everything that names an object derives from it
here or in ``recipe.Variant.key_for`` (variants), nowhere else.
"""

from __future__ import annotations

import re

MAX_KEY_BYTES = 1024
RESERVED = "_pixpipe/"  # pixpipe's own records, in every store; no original may live here
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


def check_original_key(key: str) -> str:
    """``validate_key``, and not under the reserved ``_pixpipe/`` prefix: the rule for a key
    a client (an upload, a dropped file, a notification) names an original with."""
    validate_key(key)
    if key == RESERVED.rstrip("/") or key.startswith(RESERVED):
        raise BadKey(f"keys under {RESERVED!r} are reserved for pixpipe records (got {key!r})")
    return key


def reserved(key: str) -> bool:
    """Whether ``key`` is one of pixpipe's own records, never an original."""
    return key.startswith(RESERVED)


def error_key(key: str) -> str:
    """Where a quarantined original's error record lives (in the quarantine store). Under the
    reserved prefix, so no original's name can ever be a record's."""
    return f"{RESERVED}errors/{key}.json"


def legacy_error_key(key: str) -> str:
    """Where records were kept before ``_pixpipe/`` (still read and cleared)."""
    return f"{key}.error.json"


def state_key(key: str) -> str:
    """Where a runtime without a KV bucket (Lambda) keeps an original's state, in the
    variants store."""
    return f"{RESERVED}state/{key}.json"


def dead_letter_key(role: str, sequence: int) -> str:
    """Where a message a role gave up on is kept, in the quarantine store."""
    return f"{RESERVED}deadletters/{role}/{sequence:012d}.json"


__all__ = [
    "MAX_KEY_BYTES", "RESERVED", "BadKey", "check_original_key", "dead_letter_key", "error_key",
    "legacy_error_key", "reserved", "state_key", "validate_key",
]  # fmt: skip
