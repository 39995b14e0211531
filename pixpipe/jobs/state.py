"""An original's state: one frozen document per key, with one serializer, and the small port
every runtime stores it through (a JetStream KV bucket in the pipeline, a JSON record in the
variants store on Lambda).

``state`` is ``pending`` (announced), ``processing``, ``done`` or ``failed``. ``etag`` and
``recipe`` say which version of the original, rendered with which recipe, the document is
about: a delivery that finds both unchanged and the state final has nothing left to do.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, Self

from pydantic import AliasChoices, ConfigDict, Field

from ..documents import Document
from ..events import VariantInfo

STATES = ("pending", "processing", "done", "failed")
FINAL = ("done", "failed")
StateName = Literal["pending", "processing", "done", "failed"]


def _now() -> datetime:
    return datetime.now(UTC)


class _Frozen(Document):
    # ``delivery`` was an int (``event_seq``) in documents written before it had a name.
    model_config = ConfigDict(frozen=True, extra="ignore", coerce_numbers_to_str=True)


class VariantRecord(VariantInfo):
    """One stored variant, as ``image.processed`` reports it; ``fp`` and ``etag`` are set when
    a backfill made it (the spec's fingerprint and the original's etag it was made from)."""

    fp: str | None = None
    etag: str | None = None


class SourceInfo(_Frozen):
    """What the original's header said."""

    format: str
    width: int
    height: int


class ErrorInfo(_Frozen):
    kind: str
    message: str


class ImageState(_Frozen):
    """The state document of one original."""

    key: str
    state: StateName
    etag: str | None = None
    recipe: str | None = None  # ``recipe.recipe_id`` of the recipe that made ``variants``
    attempts: int = 0
    batch: str | None = None  # held for this batch (``pending`` until it is released)
    # The delivery that made it ``done`` (a stream sequence, an SQS message id): the same one
    # coming again means its announcement may not have got out.
    delivery: str | None = Field(None, validation_alias=AliasChoices("delivery", "event_seq"))
    variants: dict[str, VariantRecord] = Field(default_factory=dict)
    duration_ms: float | None = None
    placeholder: str | None = None  # ThumbHash, base64
    dominant: str | None = None  # "#rrggbb"
    source: SourceInfo | None = None
    error: ErrorInfo | None = None
    quarantined: bool | None = None
    updated: datetime = Field(default_factory=_now)

    @property
    def final(self) -> bool:
        return self.state in FINAL

    def but(self, **changes: Any) -> Self:
        """A copy with ``changes`` (validated) and a fresh ``updated``."""
        return super().but(**changes, updated=_now())

    def to_json(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()  # as written before it had a model


Change = Callable[["ImageState | None"], "ImageState | None"]


class StateStore(Protocol):
    """Where image states are kept: the one port the job core writes them through."""

    async def get(self, key: str) -> ImageState | None: ...

    async def recent(self, key: str) -> ImageState | None:
        """``get``, or the state as this process last read or wrote it, when that is not final
        (saving the read): it may be stale when another process wrote since. Only for a first
        look whose staleness costs work and never a write: the job core's "already done?",
        whose every write is a compare-and-set on the state as it is. A final state is read
        again, since a skip on one reopened elsewhere (a retry) would lose its work."""
        ...

    async def put(self, state: ImageState) -> None: ...

    async def change(self, key: str, change: Change) -> ImageState | None:
        """Apply ``change`` to the current state by compare-and-set, again until no other
        writer raced it; ``change`` returns the new state, or ``None`` to leave it as it is
        (then ``None`` is returned). The tool for "the newest version wins"."""
        ...


__all__ = [
    "FINAL",
    "STATES",
    "Change",
    "ErrorInfo",
    "ImageState",
    "SourceInfo",
    "StateName",
    "StateStore",
    "VariantRecord",
]
