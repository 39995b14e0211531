"""The base of every stored or sent document (image state, batch, counter, backfill chunk and
outcome): a frozen pydantic model with one serializer, so a document has one owner and one
shape on the wire. Unknown fields are ignored, so a document written by a newer version (or an
older one, with fields since dropped) still reads."""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict


class Document(BaseModel):
    """A frozen document: ``but(**changes)`` makes a validated copy; ``to_json``/``from_json``
    are its one serializer (every field, ``null`` included: readers look fields up by name)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    def but(self, **changes: Any) -> Self:
        """A copy with ``changes``, validated like the original."""
        return self.model_validate({**self.model_dump(), **changes})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (for ``bus.publish``, which does its own encoding)."""
        return self.model_dump(mode="json")

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> Self:
        return cls.model_validate_json(data)


__all__ = ["Document"]
