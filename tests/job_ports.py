"""The job core's ports as each runtime fills them in, for the suites that run over both (as
the stores' contract suite runs over every store): ``ports`` is a fixture, parametrized over
the pipeline (image state in a real JetStream KV bucket) and the Lambda (state records in the
variants store); events are recorded, not sent."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pixpipe import bus
from pixpipe.aws.runtime import RecordStates
from pixpipe.events import Event, ObjectCreated
from pixpipe.imaging import render
from pixpipe.jobs.variants import Context
from pixpipe.limits import Limits
from pixpipe.pipeline.states import KvStates
from pixpipe.recipe import Recipe
from pixpipe.storage import Stores, open_store

RECIPE = Recipe.parse(["s=200x200", "t=64x64,cover"])
LIMITS = Limits()


@dataclasses.dataclass
class Ports:
    ctx: Context
    events: list[Event]


async def _render(data: bytes, recipe: Recipe) -> Any:
    return render(data, recipe, LIMITS)


def _stores(tmp_path: Path) -> Stores:
    names = ("originals", "variants", "backup", "quarantine", "cache")
    unique = uuid.uuid4().hex[:8]
    return Stores(**{n: open_store(f"memory://jobs-{unique}-{n}") for n in names})


@pytest.fixture(params=["pipeline", "lambda"])
async def ports(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Ports]:
    """The job core's ports as each runtime fills them in (events recorded, not sent)."""
    stores = _stores(tmp_path)
    events: list[Event] = []

    async def publish(event: Event) -> None:
        events.append(event)

    if request.param == "lambda":
        records = RecordStates(stores.variants)
        yield Ports(Context(stores, records, publish, _render, RECIPE, LIMITS), events)
        return
    nc = await bus.connect(request.getfixturevalue("nats_server").url, max_reconnect_attempts=3)
    try:
        jsc = nc.jetstream()
        for info in await jsc.streams_info():  # an empty JetStream, as the `js` fixture does
            await jsc.delete_stream(info.config.name)
        states = KvStates(await bus.ensure_topology(jsc))
        yield Ports(Context(stores, states, publish, _render, RECIPE, LIMITS), events)
    finally:
        await nc.close()


async def upload(ports: Ports, key: str, data: bytes) -> ObjectCreated:
    etag = await ports.ctx.stores.originals.put(key, data)
    return ObjectCreated(key=key, size=len(data), etag=etag)
