"""The documents of the ``pixpipe-batches`` bucket: one frozen model each, one serializer,
and the one encoding of their keys. Field names are those stored since batches began, so
buckets written by earlier versions still read.

- ``b.{id}`` → ``Batch``: the batch, with its ``members``.
- ``m.{key}`` → ``MemberIndex``: which batch (and which upload) an original is held for.
- ``c.{id}`` → ``Counter``: how many were released, and how many are done or failed.
- ``o.{id}.{key}``: an image's outcome, the bare word ``done`` or ``failed`` (no model: it
  is only ever created, and counted).
"""

from __future__ import annotations

import re
import weakref
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Self

from nats.js.errors import KeyNotFoundError
from pydantic import Field

from ... import bus
from ...bus import kv_name
from ...documents import Document
from ..runtime import Runtime

if TYPE_CHECKING:
    from nats.js.kv import KeyValue

BATCH_STATES = ("open", "processing", "done")
BatchState = Literal["open", "processing", "done"]
Outcome = Literal["done", "failed"]
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_BUCKETS: weakref.WeakKeyDictionary[Any, KeyValue] = weakref.WeakKeyDictionary()


class BatchError(ValueError):
    """A batch request that cannot be met; ``status`` is the HTTP status that says why."""

    status = 400


class NoBatch(BatchError):
    status = 404


class BatchConflict(BatchError):
    status = 409


def _now() -> datetime:
    return datetime.now(UTC)


class Member(Document):
    """One original of a batch, as stored: enough to announce it without looking again."""

    etag: str | None
    size: int
    type: str | None  # its content type


class Batch(Document):
    """``b.{id}``. ``released`` and ``announcing`` are epoch seconds because they are claims:
    another process compares them with its clock to tell a live claim from a dead one's."""

    id: str
    expected: int
    state: BatchState
    deadline: float | None = None  # epoch seconds
    members: dict[str, Member] = Field(default_factory=dict)
    created: datetime = Field(default_factory=_now)
    updated: datetime | None = None
    released: float | None = None  # when it left ``open``: the claim to publish its members
    published: bool = False  # every member's ``object.created`` went out
    missing: int | None = None  # set when a deadline released it short
    done: int = 0  # the final counts, set with ``state: done``
    failed: int = 0
    finished: datetime | None = None
    announcing: float | None = None  # the claim to publish ``batch.done``
    announced: bool = False  # ``batch.done`` went out

    def but(self, **changes: Any) -> Self:
        """A copy with ``changes`` (validated) and a fresh ``updated``."""
        return super().but(**changes, updated=_now())


class MemberIndex(Document):
    """``m.{key}``: lets the ``batches`` consumer credit an image's outcome to its batch
    without the worker knowing about batches; ``etag`` tells a later upload of the key."""

    batch: str | None = None
    etag: str | None = None


class Counter(Document):
    """``c.{id}``: created when the batch is released, bumped once per image outcome."""

    released: int
    done: int = 0
    failed: int = 0

    @property
    def settled(self) -> bool:
        """Every released image is done or failed."""
        return self.done + self.failed >= self.released

    def credited(self, outcome: Outcome) -> Counter:
        return self.but(**{outcome: getattr(self, outcome) + 1})


def validate_id(batch_id: str) -> str:
    if not _ID.match(batch_id):
        raise BatchError(
            "batch id must be 1-128 letters, digits, '.', '_', ':' or '-', starting with a "
            f"letter or digit (got {batch_id!r})"
        )
    return batch_id


def batch_key(batch_id: str) -> str:
    return f"b.{kv_name(batch_id)}"


def member_key(key: str) -> str:
    return f"m.{kv_name(key)}"


def counter_key(batch_id: str) -> str:
    return f"c.{kv_name(batch_id)}"


def outcome_key(batch_id: str, key: str) -> str:
    return f"o.{kv_name(batch_id)}.{kv_name(key)}"


def outcome_keys(batch_id: str) -> str:
    """The subject pattern of every outcome of a batch."""
    return f"o.{kv_name(batch_id)}.>"


async def bucket(rt: Runtime) -> KeyValue:
    """The ``pixpipe-batches`` bucket (looked up once per connection, not per call)."""
    kv = _BUCKETS.get(rt.js)
    if kv is None:
        kv = _BUCKETS[rt.js] = await rt.js.key_value(bus.BATCHES_BUCKET)
    return kv


async def get(rt: Runtime, batch_id: str) -> Batch | None:
    """The batch, or ``None`` if there is no such batch."""
    try:
        entry = await (await bucket(rt)).get(batch_key(validate_id(batch_id)))
    except KeyNotFoundError:
        return None
    return Batch.from_json(entry.value) if entry.value else None


async def get_member(kv: KeyValue, key: str) -> MemberIndex | None:
    try:
        entry = await kv.get(member_key(key))
    except KeyNotFoundError:
        return None
    return MemberIndex.from_json(entry.value) if entry.value else None


async def get_counter(kv: KeyValue, batch_id: str) -> tuple[Counter, int] | None:
    """The counter and its revision (to compare-and-set it), or ``None`` until released."""
    try:
        entry = await kv.get(counter_key(batch_id))
    except KeyNotFoundError:
        return None
    if not entry.value:
        return None
    return Counter.from_json(entry.value), entry.revision or 0


def public(doc: Batch, counter: Counter | None = None) -> dict[str, Any]:
    """The batch as clients see it: ``{id, expected, received, state, done, failed,
    missing?, deadline?}``; ``missing`` only once a deadline released it short."""
    tally = doc if doc.state == "done" else counter
    out: dict[str, Any] = {
        "id": doc.id, "expected": doc.expected, "received": len(doc.members),
        "state": doc.state, "done": tally.done if tally else 0,
        "failed": tally.failed if tally else 0,
    }  # fmt: skip
    if doc.missing is not None:
        out["missing"] = doc.missing
    if doc.deadline is not None:
        out["deadline"] = datetime.fromtimestamp(doc.deadline, UTC).isoformat()
    return out


async def status(rt: Runtime, batch_id: str) -> dict[str, Any] | None:
    """``public`` for a batch id, with its live counts; ``None`` if there is no such batch."""
    doc = await get(rt, batch_id)
    if doc is None:
        return None
    counter = await get_counter(await bucket(rt), batch_id)
    return public(doc, counter[0] if counter else None)


__all__ = [
    "BATCH_STATES",
    "Batch",
    "BatchConflict",
    "BatchError",
    "BatchState",
    "Counter",
    "Member",
    "MemberIndex",
    "NoBatch",
    "Outcome",
    "batch_key",
    "bucket",
    "counter_key",
    "get",
    "get_counter",
    "get_member",
    "member_key",
    "outcome_key",
    "outcome_keys",
    "public",
    "status",
    "validate_id",
]
