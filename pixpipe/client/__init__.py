"""pixpipe's Python client: upload originals, wait for their variants, build URLs.

```python
from pixpipe.client import Client, ProcessingFailed

with Client("http://127.0.0.1:8000", api_key=KEY, signing_secret=SECRET) as px:
    px.upload("users/42/photo.jpg", "photo.jpg", progress=print)   # streamed from the file
    try:
        state = px.wait("users/42/photo.jpg", timeout=60)          # over Server-Sent Events
    except ProcessingFailed as failed:
        print(failed.kind, failed.message)                          # corrupt, too_large, …
    else:
        print(state.variants["m"].url, state.variants["m"].width)
    url = px.sign({"w": 800, "f": "auto"}, "users/42/photo.jpg")   # an on-the-fly /t/ URL
```

``AsyncClient`` has the same methods, awaited. ``verify_webhook(secret, body, headers)``
checks a webhook delivery. Errors: ``PixpipeClientError`` (``status``, ``kind``, ``detail``,
``retry_after``) for any non-2xx answer; ``ProcessingFailed`` and ``WaitTimeout`` from
``wait``; ``BadWebhook``.

| module | what |
|---|---|
| ``sync.py`` / ``aio.py`` | ``Client`` / ``AsyncClient``: only the sending |
| ``_calls.py`` | every request built, every response read: the one place that knows the API |
| ``_bodies.py`` | upload bodies streamed in chunks, with progress |
| ``_events.py`` | ``wait``: the SSE reader, the deadline, when to connect again |
| ``models.py`` | the typed answers (frozen dataclasses) |
| ``errors.py`` · ``webhooks.py`` | what is raised · ``verify_webhook`` |

Importing it loads neither FastAPI, pyvips nor NATS (``tests/test_client.py`` checks).
"""

from __future__ import annotations

from ._bodies import Data, Progress
from .aio import AsyncClient
from .errors import BadWebhook, PixpipeClientError, ProcessingFailed, WaitTimeout
from .models import Batch, ErrorInfo, Grant, ImageState, Srcset, Uploaded, VariantState
from .sync import Client
from .webhooks import verify_webhook

__all__ = [
    "AsyncClient", "BadWebhook", "Batch", "Client", "Data", "ErrorInfo", "Grant", "ImageState",
    "PixpipeClientError", "ProcessingFailed", "Progress", "Srcset", "Uploaded", "VariantState",
    "WaitTimeout", "verify_webhook",
]  # fmt: skip
