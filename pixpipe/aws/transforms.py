"""On-the-fly transforms on Lambda: CloudFront → a Function URL → ``transform_handler``, which
runs pixpipe's own transform routes (``/t/``, imgproxy's and thumbor's URLs; ``http/transform.py``
and ``http/compat.py``: the same signatures, options, cache keys, limits and failure kinds)
through Mangum, the ASGI adapter for Lambda, in an app that has only those routes.

Lambda answers at most 6 MB (6,291,556 bytes) of JSON, and a binary body travels in it as
base64, 4 bytes for every 3. A result is answered inline only up to ``INLINE_MAX`` = 4 MiB of
image (5,592,408 bytes of base64, leaving over 600 KB for the headers and the JSON around them;
5 MB of image would be 6.67 MB of base64, over the cap). A bigger one is never refused and never
passes through Lambda: the route has already kept it in the cache store, so the answer is a
``307`` to where CloudFront serves that store, ``{PIXPIPE_AWS__CACHE_URL}/{cache key}``
(``/cache/…``: the template's ``cache/*`` behaviour, the cache bucket under ``cache/``). That is
decided on the response's start, from its ``Content-Length``, before a byte of its body is read:
a large cached result is redirected to as well, never downloaded. The redirect carries the
result's ``Cache-Control`` (``public, no-cache``: the original may be replaced) and ``Vary``.

Lambda-only settings (the environment; not in ``pixpipe.toml``):

- ``PIXPIPE_AWS__INLINE_MAX_BYTES``: the largest result answered inline, 0 … 4194304 (default);
  0 redirects every result.
- ``PIXPIPE_AWS__CACHE_URL``: where CloudFront serves the cache store (default ``/cache``).

Renders run in the invocation's process, one at a time, and libvips stops one at
``limits.max_seconds`` or when the invocation has ``MARGIN_S`` left, whichever comes first
(``runtime.Runtime.render``).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any, cast
from urllib.parse import unquote

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from fastapi import FastAPI
from mangum import Mangum
from mangum.handlers import HTTPGateway
from mangum.types import LambdaConfig, LambdaEvent
from starlette.datastructures import Headers
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..http import compat
from ..http.compat import resolve_imgproxy, resolve_thumbor
from ..http.delivery import REVALIDATE, SAFE
from ..http.hot import HotCache
from ..http.metrics import Metrics
from ..http.renders import Renders
from ..http.signing import signing_secret
from ..http.transform import Target, resolve
from .handlers import MARGIN_S, logger, metrics
from .runtime import INVOCATION_DEADLINE, Runtime, runtime

INLINE_MAX_ENV = "PIXPIPE_AWS__INLINE_MAX_BYTES"
CACHE_URL_ENV = "PIXPIPE_AWS__CACHE_URL"
LAMBDA_RESPONSE_MAX = 6_291_556  # bytes of JSON a synchronous invocation may answer
INLINE_MAX = 4 * 1024 * 1024  # 4/3 of it as base64 leaves room for the headers under the cap
CACHE_URL = "/cache"
REDIRECT = 307  # temporary (the original may change), kept by CloudFront per Cache-Control


class _TooLarge(Exception):
    """A result's response started over the inline limit: it is answered with a redirect."""

    def __init__(self, start: Message) -> None:
        super().__init__("over the inline limit")
        self.start = start


class Offload:
    """ASGI middleware: a result (``200``, or a ``206`` range of it) over ``inline_max`` bytes
    of body (every one at 0, and one of unknown length) is answered with a redirect to its
    object in the cache store, where the transform route has put it before answering. The route
    is stopped at its response's start, so a large result read from the cache store is never
    streamed through Lambda. Errors, ``304`` and the fallback image's ``404`` pass as they are."""

    def __init__(self, app: ASGIApp, inline_max: int = INLINE_MAX, cache_url: str = CACHE_URL):
        self.app, self.inline_max, self.cache_url = app, inline_max, cache_url.rstrip("/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            return await self.app(scope, receive, send)

        async def watched(message: Message) -> None:
            if message["type"] == "http.response.start" and self._too_large(message):
                raise _TooLarge(message)
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except _TooLarge as large:
            response = await self._redirect(scope, large.start)
            await response(scope, receive, send)

    def _too_large(self, start: Message) -> bool:
        if start["status"] not in (200, 206):  # a range CloudFront asks for can be large too
            return False
        length = dict(start.get("headers", [])).get(b"content-length")
        return length is None or self.inline_max == 0 or int(length) > self.inline_max

    async def _redirect(self, scope: Scope, start: Message) -> Response:
        """The same URL resolved once more (the route's own resolver, no render) for the cache
        key of the result it has just answered."""
        try:
            found = await target_of(scope["app"].state, scope)
        except Exception as exc:  # the original changed or went away meanwhile: ask again
            logger.warning("no redirect for %s: %r", scope["path"], exc)
            return JSONResponse({"detail": "the source changed; retry", "kind": "transient"}, 503,
                                headers={"Retry-After": "1"})  # fmt: skip
        cached = dict(start.get("headers", [])).get(b"x-cache", b"miss").decode("latin-1")
        headers = {"Location": f"{self.cache_url}/{found.ckey}", "Cache-Control": REVALIDATE,
                   **SAFE, **found.extra, "X-Cache": cached}  # fmt: skip
        return Response(status_code=REDIRECT, headers=headers)


async def target_of(state: Any, scope: Scope) -> Target:
    """What a transform URL names, resolved as its route resolves it (``LookupError`` for a
    path no transform route takes)."""
    path, headers = scope["path"], Headers(scope=scope)
    if path.startswith("/t/"):
        signature, _, rest = path[3:].partition("/")
        return await resolve(state, signature, rest, headers)
    settings = state.rt.settings
    raw = (scope.get("raw_path") or path.encode()).decode("latin-1").split("?", 1)[0]
    for prefix, resolving in ((settings.imgproxy.prefix, resolve_imgproxy),
                              (settings.thumbor.prefix, resolve_thumbor)):  # fmt: skip
        prefix = "/" + prefix.strip("/")
        if raw.startswith(prefix + "/"):  # signed over the raw path, as http/compat.py reads it
            return await resolving(state, raw[len(prefix) :], headers.get("accept"))
    raise LookupError(f"no transform route takes {path!r}")


def transforms_app(
    rt: Runtime, inline_max: int = INLINE_MAX, cache_url: str = CACHE_URL
) -> FastAPI:
    """The transform routes alone, on a Lambda's runtime: renders in this process, the signing
    secret from the environment (a Lambda keeps no data dir), results over ``inline_max``
    answered by a redirect to ``cache_url``."""
    app = FastAPI(title="pixpipe transforms", openapi_url=None, docs_url=None, redoc_url=None)
    app.state.rt = rt
    secrets = [signing_secret(rt.settings), *rt.settings.api.previous_signing_secrets]
    app.state.secrets = [secret for secret in secrets if secret]
    if not app.state.secrets:
        logger.warning("no PIXPIPE_API__SIGNING_SECRET: every /t/ URL is refused (403)")
    app.state.renders = Renders(rt.limits, render=rt.render)
    app.state.hot = HotCache()  # kept while the container is warm
    app.state.metrics = Metrics()
    compat.mount(app, rt.settings.imgproxy.prefix, rt.settings.thumbor.prefix)  # as the API's
    app.add_middleware(Offload, inline_max=inline_max, cache_url=cache_url)
    return app


class FunctionUrl(HTTPGateway):
    """A Function URL's request (payload format 2.0), its path as sent: ``rawPath`` is still
    percent-encoded, and imgproxy's and thumbor's signatures are checked over that raw form,
    which Mangum's own handler leaves out of the scope (``raw_path: None``)."""

    @classmethod
    def infer(cls, event: LambdaEvent, context: Any, config: LambdaConfig) -> bool:
        return event.get("version") == "2.0" and "rawPath" in event and "requestContext" in event

    @property
    def scope(self) -> Scope:
        scope = super().scope
        raw = self.event["rawPath"] or "/"
        scope.update(path=unquote(raw), raw_path=raw.encode())
        return scope


def inline_max() -> int:
    """``PIXPIPE_AWS__INLINE_MAX_BYTES``, checked against Lambda's response cap."""
    text = os.environ.get(INLINE_MAX_ENV, "").strip()
    if not text:
        return INLINE_MAX
    if not text.isdigit() or int(text) > INLINE_MAX:
        raise ValueError(
            f"{INLINE_MAX_ENV} must be a whole number from 0 (redirect every result) to "
            f"{INLINE_MAX} (got {text!r}): Lambda answers at most {LAMBDA_RESPONSE_MAX} bytes, "
            "and an image travels in them as base64 (4/3 of its size)"
        )
    return int(text)


_made: list[tuple[Runtime, Mangum]] = []  # this container's app, for its runtime
_loops: list[asyncio.AbstractEventLoop] = []


def adapter(rt: Runtime) -> Mangum:
    """Mangum over this container's transforms app (made again when the environment changes)."""
    if not _made or _made[0][0] is not rt:
        app = transforms_app(rt, inline_max(), os.environ.get(CACHE_URL_ENV) or CACHE_URL)
        _made[:] = [(rt, Mangum(app, lifespan="off", custom_handlers=[FunctionUrl]))]
    return _made[0][1]


def _loop() -> asyncio.AbstractEventLoop:
    """The container's event loop, current for Mangum (``asyncio.run`` elsewhere unsets it)."""
    if not _loops or _loops[0].is_closed():
        _loops[:] = [asyncio.new_event_loop()]
    asyncio.set_event_loop(_loops[0])
    return _loops[0]


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def transform_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """The transforms function: a Function URL request for a ``/t/``, imgproxy or thumbor URL
    → the image inline (base64), a redirect to it in the cache bucket, or the error's status."""
    metrics.add_metric(name="Transforms", unit=MetricUnit.Count, value=1)
    left = context.get_remaining_time_in_millis() / 1000 - MARGIN_S
    INVOCATION_DEADLINE.set(time.monotonic() + max(left, 0.001))
    _loop()
    answer: dict[str, Any] = adapter(runtime())(event, cast(Any, context))  # one protocol, 2 stubs
    redirected = answer.get("statusCode") == REDIRECT
    metrics.add_metric(name="TransformsRedirected", unit=MetricUnit.Count, value=int(redirected))
    return answer


__all__ = [
    "CACHE_URL",
    "INLINE_MAX",
    "LAMBDA_RESPONSE_MAX",
    "REDIRECT",
    "FunctionUrl",
    "Offload",
    "adapter",
    "inline_max",
    "target_of",
    "transform_handler",
    "transforms_app",
]
