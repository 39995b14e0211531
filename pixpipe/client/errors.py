"""What the client raises: the API said no (``PixpipeClientError``), an image could not be made
(``ProcessingFailed``), ``wait`` ran out of time (``WaitTimeout``), a webhook is not pixpipe's
(``BadWebhook``). Network failures are httpx's own (``httpx.TransportError``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

    from .models import ImageState


class PixpipeClientError(Exception):
    """The API answered with a status other than 2xx.

    - ``status``: the HTTP status (401 no or wrong API key, 403 a bad signature or upload
      token, 404 unknown image or batch, 409 a batch no longer open, 413 too large, 415 not
      an image we take, 422 a request the API cannot read, 503 busy or the bus is down);
    - ``kind``: the failure kind where the API gives one (``corrupt``, ``unsupported``,
      ``too_large``, ``missing``, ``transient``), else ``None``;
    - ``detail``: what the API said was wrong (a string, or a list for a 422);
    - ``retry_after``: seconds to wait before asking again (503), else ``None``.
    """

    def __init__(
        self, status: int, detail: Any, kind: str | None = None, retry_after: float | None = None,
        request: str = "",
    ) -> None:  # fmt: skip
        self.status, self.detail, self.kind, self.retry_after = status, detail, kind, retry_after
        where = f" ({request})" if request else ""
        super().__init__(f"{status}{f' {kind}' if kind else ''}: {detail}{where}")

    @classmethod
    def of(cls, response: httpx.Response) -> PixpipeClientError:
        """The error of a response that was not 2xx (its body already read)."""
        detail: Any = response.text or response.reason_phrase
        kind = None
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and "detail" in body:
            detail, kind = body["detail"], body.get("kind")
        retry = response.headers.get("retry-after")
        request = f"{response.request.method} {response.request.url.path}"
        retry_after = float(retry) if retry and retry.isdigit() else None
        return cls(response.status_code, detail, kind, retry_after, request)


class ProcessingFailed(Exception):
    """The image reached ``failed``: ``kind`` (``corrupt``, ``unsupported``, ``too_large``,
    ``missing``, ``transient``) and ``message`` say why; ``state`` is the whole final state.
    The original is kept (``GET /v1/failures`` lists it; ``transient`` is worth a retry)."""

    def __init__(self, state: ImageState) -> None:
        self.state = state
        self.key = state.key
        self.kind = state.error.kind if state.error else "transient"
        self.message = state.error.message if state.error else ""
        super().__init__(f"{self.key!r} failed ({self.kind}): {self.message}")


class WaitTimeout(TimeoutError):
    """``wait`` gave up before the image was ``done`` or ``failed``; ``state`` is the last one
    seen (``None``: the key was never known to the API in that time)."""

    def __init__(self, key: str, timeout: float, state: ImageState | None) -> None:
        self.key, self.timeout, self.state = key, timeout, state
        seen = f"still {state.state}" if state else "never uploaded, as far as the API knows"
        super().__init__(f"{key!r} not done or failed after {timeout:g} s ({seen})")


class BadWebhook(ValueError):
    """A webhook whose signature, headers or timestamp do not verify: refuse it (answer 400)."""


__all__ = ["BadWebhook", "PixpipeClientError", "ProcessingFailed", "WaitTimeout"]
