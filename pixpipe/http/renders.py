"""The API's own renders (on-the-fly transforms, ``POST /v1/invoke``): the pipeline's
``RenderPool`` (worker processes, timeouts; a bomb fails one render, never the API), started on
first use, with at most ``limits.transform_concurrency`` renders in flight. Past that a render
is refused at once with ``Busy`` (the endpoint answers 503 + ``Retry-After``): a client or CDN
retrying later beats a queue that grows without bound. Identical renders in flight share one.

Given a ``render`` function, renders run through it instead, in this process: the Lambda's
transforms (``pixpipe.aws.transforms``), one invocation at a time, with its own time limit.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..config import Limits
from ..recipe import Recipe, Variant

if TYPE_CHECKING:
    from ..imaging import Output, Rendered
    from ..jobs.pool import RenderPool

# A recipe rendered in this process (``aws.runtime.Runtime.render``), instead of by the pool.
RenderIn = Callable[[bytes, Recipe], Awaitable["Rendered"]]


class Busy(Exception):
    """Every render slot is taken."""


class Renders:
    def __init__(self, limits: Limits, render: RenderIn | None = None) -> None:
        self.limits = limits
        self._render = render
        self.in_flight = 0
        self._pool: RenderPool | None = None
        self._shared: dict[str, asyncio.Future[Any]] = {}

    @property
    def pool(self) -> RenderPool:
        if self._pool is None:
            from ..jobs.pool import RenderPool  # pebble's processes: never started on a Lambda

            workers = max(1, min(self.limits.transform_concurrency, os.cpu_count() or 1))
            self._pool = RenderPool(workers, self.limits)
        return self._pool

    async def render(
        self, data: bytes, variant: Variant, assets: Mapping[str, bytes] | None = None
    ) -> Output:
        """One variant of ``data`` (``PixpipeError`` with a kind for a bad input); ``assets``:
        the watermark's image, by the name the variant gives it."""
        recipe = Recipe((variant,), assets or {})
        if self._render is not None:
            rendered = await self._render(data, recipe)
        else:  # a transform has no use for the placeholder: not computed
            rendered = await self.pool.render(data, recipe, placeholder=False)
        output: Output = rendered.variants[0]
        return output

    async def once(self, key: str, work: Callable[[], Awaitable[Any]]) -> Any:
        """Run ``work`` in a render slot, shared by every caller asking for ``key`` meanwhile."""
        shared = self._shared.get(key)
        if shared is not None:
            return await asyncio.shield(shared)
        if self.in_flight >= self.limits.transform_concurrency:
            raise Busy
        self.in_flight += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._shared[key] = future
        try:
            result = await work()
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(exc)
                future.exception()  # retrieved: no "never retrieved" warning if nobody shared
            raise
        else:
            future.set_result(result)
            return result
        finally:
            self.in_flight -= 1
            del self._shared[key]

    async def close(self) -> None:
        if self._pool is not None:
            await asyncio.to_thread(self._pool.close)
            self._pool = None


__all__ = ["Busy", "Renders"]
