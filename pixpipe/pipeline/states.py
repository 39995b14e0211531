"""Image states in the JetStream key-value bucket ``pixpipe-images``: the pipeline's
``StateStore`` (``jobs/state.py``), plus the listings and the watch the API needs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from nats.js.errors import KeyNotFoundError, NoKeysError

from ..bus import kv_name, kv_text
from ..jobs.state import ImageState

if TYPE_CHECKING:
    from nats.js.kv import KeyValue


class KvStates:
    """Read and write image states; the last writer wins."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    async def get(self, key: str) -> ImageState | None:
        try:
            entry = await self.kv.get(kv_name(key))
        except KeyNotFoundError:
            return None
        return ImageState.from_json(entry.value) if entry.value else None

    async def put(self, state: ImageState) -> None:
        await self.kv.put(kv_name(state.key), state.to_json())

    async def all(self) -> AsyncIterator[ImageState]:
        """Every image's state (for listings; fine up to a few hundred thousand keys)."""
        try:
            names = await self.kv.keys()
        except NoKeysError:
            return
        for name in names:
            if state := await self.get(kv_text(name)):
                yield state

    async def failed(self) -> list[ImageState]:
        return [state async for state in self.all() if state.state == "failed"]


__all__ = ["KvStates"]
