"""One failure type for the whole pipeline: every decision (retry, quarantine, HTTP status)
looks only at its ``kind``."""

from __future__ import annotations

from enum import StrEnum


class Kind(StrEnum):
    CORRUPT = "corrupt"  # cannot be decoded
    UNSUPPORTED = "unsupported"  # not an image we take
    TOO_LARGE = "too_large"  # over a limit: bytes, pixels, frames
    MISSING = "missing"  # the original is gone
    TRANSIENT = "transient"  # storage or network trouble: retry

    @property
    def permanent(self) -> bool:
        """Permanent failures are never retried: the original goes to quarantine."""
        return self is not Kind.TRANSIENT


class PixpipeError(Exception):
    """A failure with a kind and a message meant for people."""

    def __init__(self, kind: Kind | str, message: str) -> None:
        super().__init__(message)
        self.kind = Kind(kind)
        self.message = message

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"

    def __reduce__(self) -> tuple[type[PixpipeError], tuple[str, str]]:
        # Keeps the kind across process boundaries (multiprocessing pickles exceptions).
        return (type(self), (self.kind.value, self.message))

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind.value, "message": self.message}

class TimedOut(PixpipeError):
    """A render that ran out of time. Transient the first time (a busy machine, a noisy
    neighbour); the job core makes a repeat, and ``pixpipe process`` its only try, ``too_large``
    (:meth:`final`)."""

    def __init__(self, kind: Kind | str = Kind.TRANSIENT, message: str = "timed out") -> None:
        super().__init__(kind, message)

    def final(self) -> PixpipeError:
        return PixpipeError(Kind.TOO_LARGE, self.message)


__all__ = [
    "Kind",
    "PixpipeError",
    "TimedOut",
]
