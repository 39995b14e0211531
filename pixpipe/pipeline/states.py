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
from ..recent import Recent

if TYPE_CHECKING:
    from nats.js.kv import KeyValue


log = logging.getLogger("pixpipe")
# A state as last seen here: its KV revision (None: there is none) and the state itself.
Seen = tuple[int | None, ImageState | None]
# Enough for every image in flight (a state is needed again only within its own job):
# more would only hold old states (the soak saw 4096 of them take 20 MB).
REMEMBERED = 256


class KvStates:
    """Read and write image states; ``change`` is compare-and-set.

    The revision of each state last read or written here is remembered (for the newest
    ``REMEMBERED`` keys), so a change right after a read or a write sends its compare-and-set at
    once instead of reading again: a stale revision only costs the read it saved.
    """

    def __init__(self, kv: KeyValue, remember: int = REMEMBERED) -> None:
        self.kv = kv
        self._seen: Recent[str, Seen] = Recent(remember)

    async def get(self, key: str) -> ImageState | None:
        return (await self._read(kv_name(key)))[1]

    async def recent(self, key: str) -> ImageState | None:
        """The state remembered from this process's last read or write of it, unless there is
        none or it is final, else read: in ``pixpipe up`` the worker finds the ``pending`` its
        own API wrote just before. A final state is always read again: another process may
        have opened it since (a retry of a failure, a reprocess), and a skip on it would lose
        that work."""
        name = kv_name(key)
        seen = self._seen.get(name)
        if seen is not None and seen[1] is not None and not seen[1].final:
            return seen[1]
        return (await self._read(name))[1]

    async def put(self, state: ImageState) -> None:
        name = kv_name(state.key)
        self._seen[name] = (await self.kv.put(name, state.to_json()), state)

    async def create(self, state: ImageState) -> bool:
        """Write the first state of a key never written (no read first); ``False`` if it has
        one, or had one (a deleted key: ``kv.create`` would look it up, here the caller's
        read does)."""
        name = kv_name(state.key)
        try:
            written = await self.kv.update(name, state.to_json(), last=0)  # none there yet
        except KeyWrongLastSequenceError:
            return False
        self._seen[name] = (written, state)
        return True

    async def change(self, key: str, change: Change) -> ImageState | None:
        """Compare-and-set on the KV revision (``kv.update(last=…)``; ``kv.create`` for a
        first state), again until no other writer came in between. A change that declines
        a remembered state is asked again on a fresh read before its ``None`` is believed."""
        name = kv_name(key)
        seen = self._seen.pop(name, None)
        while True:
            fresh = seen is None
            revision, current = seen or await self._read(name)
            seen = None
            new = change(current)
            if new is None:
                if fresh:
                    return None
                continue
            try:
                if revision is None:
                    written = await self.kv.create(name, new.to_json())
                else:
                    written = await self.kv.update(name, new.to_json(), last=revision)
            except KeyWrongLastSequenceError:
                continue  # someone wrote first: look again
            self._seen[name] = (written, new)
            return new

    async def _read(self, name: str) -> Seen:
        try:
            entry = await self.kv.get(name)
        except KeyNotFoundError:
            seen: Seen = (None, None)
        else:
            state = ImageState.from_json(entry.value) if entry.value else None
            seen = (entry.revision, state)
        self._seen[name] = seen
        return seen

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
