"""Image states in the JetStream key-value bucket ``pixpipe-images``: the pipeline's
``StateStore`` (``jobs/state.py``), plus the listings and the watch the API needs."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from pydantic import ValidationError

from ..bus import kv_keys, kv_name, kv_text
from ..jobs.state import Change, ImageState

if TYPE_CHECKING:
    from nats.js.kv import KeyValue


log = logging.getLogger("pixpipe")


class KvStates:
    """Read and write image states; ``change`` is compare-and-set."""

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

    async def change(self, key: str, change: Change) -> ImageState | None:
        """Compare-and-set on the KV revision (``kv.update(last=…)``; ``kv.create`` for a
        first state), again until no other writer came in between."""
        name = kv_name(key)
        while True:
            try:
                entry = await self.kv.get(name)
            except KeyNotFoundError:
                entry = None
            current = ImageState.from_json(entry.value) if entry and entry.value else None
            new = change(current)
            if new is None:
                return None
            try:
                if entry is None:
                    await self.kv.create(name, new.to_json())
                else:
                    await self.kv.update(name, new.to_json(), last=entry.revision)
            except KeyWrongLastSequenceError:
                continue  # someone wrote first: look again
            return new

    async def all(self) -> AsyncIterator[ImageState]:
        """Every image's state (for listings; fine up to a few hundred thousand keys). A record
        that is not a state pixpipe can read (another program's, hand-written) is left out
        with a warning: one bad record must not take every listing down."""
        for name in await kv_keys(self.kv):
            try:
                state = await self.get(kv_text(name))
            except (ValidationError, ValueError) as exc:
                log.warning("state record %s is not a state pixpipe can read: %s", name,
                            str(exc).splitlines()[0])  # fmt: skip
                continue
            if state:
                yield state

    async def failed(self) -> list[ImageState]:
        return [state async for state in self.all() if state.state == "failed"]


__all__ = ["KvStates"]
