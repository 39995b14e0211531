"""A mapping that keeps only its most recently set keys: what a process remembers of the
keys it just saw (KV revisions, announced uploads) without growing with every image."""

from __future__ import annotations

from collections import OrderedDict
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Recent(OrderedDict[K, V]):
    """At most ``size`` entries; setting one makes it the newest, the oldest go first."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def __setitem__(self, key: K, value: V) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


__all__ = ["Recent"]
