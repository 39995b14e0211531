"""What one Lambda container keeps between invocations (settings, stores, recipe, SNS client),
and the job core's ports filled in from it: states as JSON records in the variants store
(``.pixpipe/state/{key}.json``; no KV bucket on Lambda), events published to an SNS topic,
renders in-process.

Everything is read from the environment (PRODUCT.md §3: ``PIXPIPE_*`` and ``AWS_*``) on the
first invocation and kept while the environment stays the same, so a warm start costs nothing
and a test that changes the variables gets a fresh runtime.

Lambda-only settings (not in ``pixpipe.toml``):

- ``PIXPIPE_AWS__PROCESSED_TOPIC_ARN``: SNS topic for ``image.processed`` / ``image.failed``
  notifications (message attribute ``subject`` tells them apart); unset = no notifications.

The direct ``maxDimension`` payload behaves as on every runtime (``jobs/resize.py``);
``PIXPIPE_AWS__INVOKE_FORMAT`` is no longer read.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import os
import time
from collections.abc import Coroutine
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import Limits, Settings, load_settings
from ..errors import Kind, PixpipeError, TimedOut
from ..jobs.state import Change, ImageState
from ..jobs.variants import JSON, Context
from ..recipe import Recipe
from ..storage import STORE_NAMES, Store, Stores, open_store, state_key

if TYPE_CHECKING:
    from ..events import Event
    from ..imaging import Rendered

TOPIC_ENV = "PIXPIPE_AWS__PROCESSED_TOPIC_ARN"
# When the invocation at work must be done with its images (``time.monotonic()``), set by the
# handler from Lambda's context; a render gets no more than what is left of it.
INVOCATION_DEADLINE: ContextVar[float | None] = ContextVar("invocation_deadline", default=None)
# Lambda's only writable folder; local stores (if any) default under it.
LAMBDA_DATA_DIR = Path("/tmp/pixpipe")


@dataclass(frozen=True)
class Runtime:
    """The settings and open stores of one Lambda container."""

    settings: Settings
    stores: Stores
    topic_arn: str | None = None
    _sns: list[Any] = field(default_factory=list, repr=False, compare=False)

    @functools.cached_property
    def recipe(self) -> Recipe:
        return self.settings.recipe

    @property
    def limits(self) -> Limits:
        return self.settings.limits.frozen()

    @property
    def attempts(self) -> int:
        """Deliveries before a transient failure is recorded (match the queue's
        ``maxReceiveCount``: the template sets both from one parameter)."""
        return self.settings.retry.attempts

    def context(self) -> Context:
        """The job core's ports in this container."""
        return Context(self.stores, RecordStates(self.stores.variants), self.announce,
                       self.render, self.recipe, self.limits)  # fmt: skip

    async def render(self, data: bytes | Path, recipe: Recipe) -> Rendered:
        """Render in this process (a Lambda invocation is one image at a time anyway), within
        ``limits.max_seconds`` and what is left of the invocation: libvips stops it at the
        sooner. Stopped by the invocation's end, it is transient however often it happens."""
        from ..imaging import render

        limits, deadline = self.limits, INVOCATION_DEADLINE.get()
        if isinstance(data, Path):
            data = limits.read(data)
        left = None if deadline is None else max(deadline - time.monotonic(), 0.001)
        if left is None or left >= limits.max_seconds:
            return render(data, recipe, limits)
        try:
            return render(data, recipe, dataclasses.replace(limits, max_seconds=left))
        except TimedOut:
            raise PixpipeError(
                Kind.TRANSIENT, f"the invocation ran out of time ({left:.1f} s were left)"
            ) from None

    async def announce(self, event: Event) -> None:
        self.publish(event)

    def publish(self, event: Event) -> bool:
        """Publish ``event`` to the notifications topic, if one is configured."""
        if not self.topic_arn:
            return False
        if not self._sns:
            import boto3  # only when notifications are on; Lambda's runtime ships it

            parts = self.topic_arn.split(":")  # arn:aws:sns:{region}:{account}:{name}
            region = parts[3] if len(parts) == 6 and parts[3] else None
            self._sns.append(boto3.client("sns", region_name=region))
        attributes = {"subject": {"DataType": "String", "StringValue": event.subject}}
        try:
            self._sns[0].publish(
                TopicArn=self.topic_arn,
                Message=event.to_json().decode(),
                MessageAttributes=attributes,
            )
        except Exception as exc:  # botocore's errors: network, throttling, permissions
            raise PixpipeError(Kind.TRANSIENT, f"publish {event.subject}: {exc}") from exc
        return True


def _environment() -> tuple[tuple[str, str], ...]:
    return tuple(
        sorted((k, v) for k, v in os.environ.items() if k.startswith(("PIXPIPE_", "AWS_")))
    )


@functools.lru_cache(maxsize=4)
def _runtime(environment: tuple[tuple[str, str], ...]) -> Runtime:
    env = dict(environment)
    overrides: dict[str, Any] = {}
    if "PIXPIPE_DATA_DIR" not in env:
        overrides["data_dir"] = LAMBDA_DATA_DIR
    settings = load_settings(**overrides)
    stores = Stores(**{name: open_store(settings.store_url(name)) for name in STORE_NAMES})
    return Runtime(settings, stores, env.get(TOPIC_ENV) or None)


class RecordStates:
    """Image states as JSON records beside the variants (``storage.state_key``)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def get(self, key: str) -> ImageState | None:
        try:
            return ImageState.from_json(await self.store.get(state_key(key)))
        except PixpipeError as exc:
            if exc.kind is Kind.MISSING:
                return None
            raise
        except ValueError:
            return None  # a damaged record: render again

    async def recent(self, key: str) -> ImageState | None:
        return await self.get(key)  # nothing is remembered between invocations

    async def put(self, state: ImageState) -> None:
        await self.store.put(state_key(state.key), state.to_json(), content_type=JSON)

    async def change(self, key: str, change: Change) -> ImageState | None:
        """Read, change, write: not compare-and-set (a store record has no revision here).
        The newest upload still wins on Lambda: the job core checks the original's etag in the
        store, the one truth, before and after it renders, and writes only for the current
        version (``jobs/variants.py``)."""
        new = change(await self.get(key))
        if new is not None:
            await self.put(new)
        return new


def runtime() -> Runtime:
    """This container's runtime, built on first use from the environment."""
    return _runtime(_environment())


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run one piece of async store work to the end (Lambda handlers are synchronous)."""
    return asyncio.run(coro)


__all__ = ["INVOCATION_DEADLINE", "RecordStates", "Runtime", "run", "runtime"]
