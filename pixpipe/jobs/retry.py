"""The retry policy, in one place, for every runtime (the bus's consumer loop, the Lambda
handlers): what becomes of a delivery, from its outcome and how many times it came.

- it worked → ``ack``;
- a permanent failure (``corrupt``, ``unsupported``, ``too_large``, ``missing``) → ``give_up``
  at once: record it (quarantine, failed state, dead-letter record), never retry;
- a transient one → ``retry`` with the configured backoff, until the last attempt → ``give_up``;
- a bug (any other exception) counts as transient: retried, then given up and recorded.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from ..errors import Kind, PixpipeError

if TYPE_CHECKING:
    from ..config import RetryModel


class Action(StrEnum):
    ACK = "ack"
    RETRY = "retry"
    GIVE_UP = "give_up"


def decide(error: PixpipeError | None, delivered: int, attempts: int) -> Action:
    """The action for the ``delivered``-th delivery (1-based) of at most ``attempts``
    (``attempts < 1``: unlimited, never given up on a transient failure)."""
    if error is None:
        return Action.ACK
    if error.kind.permanent or 0 < attempts <= delivered:
        return Action.GIVE_UP
    return Action.RETRY


def backoff(retry: RetryModel, delivered: int) -> float:
    """How long to wait before redelivering after the ``delivered``-th attempt failed."""
    steps = retry.backoff_s or [0.0]
    return float(steps[min(max(delivered, 1), len(steps)) - 1])


def as_failure(exc: BaseException) -> PixpipeError:
    """Any exception as a failure with a kind: a bug is retried like a transient one."""
    if isinstance(exc, PixpipeError):
        return exc
    return PixpipeError(Kind.TRANSIENT, f"internal error: {type(exc).__name__}: {exc}")


__all__ = ["Action", "as_failure", "backoff", "decide"]
