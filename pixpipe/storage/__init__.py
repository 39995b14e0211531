"""Where bytes live: the key rules (``keys.py``) and store URLs opened as obstore stores
(``urls.py``: local folders, S3 and compatibles, GCS, Azure, memory) as ``Store``s
(``stores.py``)."""

from __future__ import annotations

from .keys import (
    MAX_KEY_BYTES,
    RESERVED,
    BadKey,
    check_original_key,
    dead_letter_key,
    error_key,
    legacy_error_key,
    reserved,
    state_key,
    validate_key,
)
from .stores import STORE_NAMES, Download, Meta, Store, bare_etag
from .urls import BadStoreUrl, Stores, open_store, open_stores

__all__ = [
    "MAX_KEY_BYTES",
    "RESERVED",
    "STORE_NAMES",
    "BadKey",
    "BadStoreUrl",
    "Download",
    "Meta",
    "Store",
    "Stores",
    "bare_etag",
    "check_original_key",
    "dead_letter_key",
    "error_key",
    "legacy_error_key",
    "open_store",
    "open_stores",
    "reserved",
    "state_key",
    "validate_key",
]
