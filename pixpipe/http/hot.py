"""Recent transform results in memory, in front of the ``cache`` store.

A hit from memory skips the cache store's HEAD and GET, which are most of a cached transform's
time on a local disk. Entries are keyed like the cache store (the source's etag is part of the
key), so an overwritten original never finds a stale entry here either. Bounded in bytes;
least recently used out first; results larger than ``max_item`` stay in the store only.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

MAX_BYTES = 64 * 1024 * 1024
MAX_ITEM = 2 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Hot:
    data: bytes
    media: str
    etag: str


class HotCache:
    def __init__(self, max_bytes: int = MAX_BYTES, max_item: int = MAX_ITEM) -> None:
        self.max_bytes, self.max_item = max_bytes, max_item
        self.size = 0
        self._items: OrderedDict[str, Hot] = OrderedDict()

    def get(self, key: str) -> Hot | None:
        hot = self._items.get(key)
        if hot is not None:
            self._items.move_to_end(key)
        return hot

    def put(self, key: str, hot: Hot) -> None:
        if len(hot.data) > self.max_item:
            return
        old = self._items.pop(key, None)
        self.size -= len(old.data) if old else 0
        self._items[key] = hot
        self.size += len(hot.data)
        while self.size > self.max_bytes:
            _, evicted = self._items.popitem(last=False)
            self.size -= len(evicted.data)

    def __len__(self) -> int:
        return len(self._items)


__all__ = ["Hot", "HotCache"]
