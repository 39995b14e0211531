"""The backfill's documents: the chunk job on ``pixpipe.reprocess``, a chunk's outcome and a
run's record in the KV bucket ``pixpipe-reprocess``. One frozen model each, with the one
serializer the coordinator and the workers share, so the two sides cannot drift.

The JSON is the shape the dict-based code wrote (unknown keys are ignored), so a chunk or an
outcome written before these models still parses.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from ..documents import Document
from ..errors import PixpipeError
from ..recipe import Recipe


class Original(Document):
    """One original of a chunk, as listed: its etag names the version the chunk is about."""

    key: str
    etag: str | None = None


class ChunkJob(Document):
    """A chunk of originals for a worker to backfill with ``variants``."""

    run: str  # ``{name}-{generation}``
    chunk: str
    # Each variant as ``dataclasses.asdict`` gives it: ``recipe.py`` owns that mapping and
    # parses it back, so the spec a worker renders is exactly the one the run is named by.
    variants: tuple[dict[str, Any], ...]
    originals: tuple[Original, ...]
    missing_only: bool

    @property
    def key(self) -> str:
        """Where its outcome is kept, and its ``Nats-Msg-Id``: a chunk is done once."""
        return f"{self.run}.{self.chunk}"

    @staticmethod
    def specs(recipe: Recipe) -> tuple[dict[str, Any], ...]:
        """``recipe`` in the form ``variants`` carries."""
        return tuple(asdict(v) for v in recipe)

    def recipe(self) -> Recipe:
        """The variants to render; a ``RecipeError`` if they do not parse."""
        return Recipe.parse(self.variants)


class Failure(Document):
    """An original the backfill could not give its variants, and why."""

    key: str
    kind: str
    message: str

    @classmethod
    def of(cls, key: str, error: PixpipeError) -> Failure:
        return cls(key=key, **error.to_dict())


class ChunkOutcome(Document):
    """What became of a chunk's originals: rendered, already up to date, or failed."""

    done: int = 0
    skipped: int = 0
    failed: tuple[Failure, ...] = ()


class RunRecord(Document):
    """A run's last generation and whether it finished (``runs.{name}``); none yet reads as
    a finished generation 0, so the first run is generation 1."""

    generation: int = 0
    complete: bool = True

    @staticmethod
    def key_for(name: str) -> str:
        return f"runs.{name}"

    def next(self) -> RunRecord:
        """The generation to run, not yet complete: this one again if it did not finish (a
        resume), else the next (a finished run asked again looks at everything again)."""
        return RunRecord(generation=self.generation + (1 if self.complete else 0), complete=False)


__all__ = ["ChunkJob", "ChunkOutcome", "Failure", "Original", "RunRecord"]
