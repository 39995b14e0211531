"""Per-image state in the JetStream key-value bucket ``pixpipe-images``.

One JSON document per original key: ``{key, state, etag, recipe, variants, error, …}``, with
``state`` one of ``pending | processing | done | failed``. KV keys allow only a few characters,
so the image key is stored base64url-encoded.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from nats.js.errors import KeyNotFoundError, NoKeysError
from nats.js.kv import KeyValue

STATES = ("pending", "processing", "done", "failed")


def kv_key(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def image_key(kv_name: str) -> str:
    return base64.urlsafe_b64decode(kv_name + "=" * (-len(kv_name) % 4)).decode()


class States:
    """Read and write image state documents."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    async def get(self, key: str) -> dict[str, Any] | None:
        try:
            entry = await self.kv.get(kv_key(key))
        except KeyNotFoundError:
            return None
        return json.loads(entry.value) if entry.value else None

    async def set(self, key: str, state: str, **fields: Any) -> dict[str, Any]:
        """Replace the document: ``state`` plus ``fields`` (the last writer wins)."""
        assert state in STATES, state
        doc = {"key": key, "state": state, **fields, "updated": datetime.now(UTC).isoformat()}
        await self.kv.put(kv_key(key), json.dumps(doc, default=str).encode())
        return doc

    async def update(self, key: str, state: str, **fields: Any) -> dict[str, Any]:
        """Change ``state`` and some fields, keeping the others."""
        old = await self.get(key) or {}
        old.pop("updated", None)
        old.pop("state", None)
        old.pop("key", None)
        return await self.set(key, state, **{**old, **fields})

    async def all(self) -> AsyncIterator[dict[str, Any]]:
        """Every image document (for listings; fine up to a few hundred thousand keys)."""
        try:
            names = await self.kv.keys()
        except NoKeysError:
            return
        for name in names:
            doc = await self.get(image_key(name))
            if doc:
                yield doc

    async def failed(self) -> list[dict[str, Any]]:
        return [doc async for doc in self.all() if doc["state"] == "failed"]
