"""Batches (orders): originals uploaded with ``?batch=ID`` wait until all ``expected`` are in,
or until the batch's deadline, and are then released together; ``pixpipe.batch.done`` fires
once, when every released original is done or failed.

All in the KV bucket ``pixpipe-batches``, every shared change made by compare-and-set on a
revision, so concurrent uploads and workers never lose an update and exactly one of them makes
each transition ``open → processing → done``. A batch holds up to ~10,000 keys (the bus's
1 MB value limit on ``b.{id}``).

- ``documents.py``: the stored documents (``b.``, ``m.``, ``c.``, ``o.`` keys), their models
  and reading them; ``public`` is what clients see of a batch.
- ``lifecycle.py``: create, reserve and hold uploads, release, expire, finish, announce.
- ``outcomes.py``: the ``batches`` consumer: image outcomes credited, the watchdog ``check``.
"""

from __future__ import annotations

from .documents import BATCH_STATES, BatchConflict, BatchError, NoBatch, get, public, status
from .lifecycle import SUBJECT_CHECK, create, expire, held, hold, release, reserve
from .outcomes import check, finished, handle, run_batches

__all__ = [
    "BATCH_STATES",
    "SUBJECT_CHECK",
    "BatchConflict",
    "BatchError",
    "NoBatch",
    "check",
    "create",
    "expire",
    "finished",
    "get",
    "handle",
    "held",
    "hold",
    "public",
    "release",
    "reserve",
    "run_batches",
    "status",
]
