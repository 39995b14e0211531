"""One original's work, with no bus: the same code under the NATS worker, the Lambda handlers,
the backfill, ``POST /v1/invoke`` and ``pixpipe invoke``.

- ``state.py``: the typed image state and the port it is stored through;
- ``variants.py``: render → store → state → announce; a failure → quarantine (the ``Context``
  of ports every runtime fills in);
- ``retry.py``: the retry policy (each kind × attempt → ack, retry or give up);
- ``resize.py``: the one direct resize; ``backup.py``: the backup copy;
- ``backfill.py``: only some variants, only where missing or stale;
- ``pool.py``: render processes (a crash costs one image, never the caller).
"""

__all__: list[str] = []
