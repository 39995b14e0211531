"""The newest upload always wins and is never deleted (PRODUCT.md §2): where the guarantee
breaks. A render of an older version held until a newer one is done, an older version's
variants landing over a newer one's, a re-upload while quarantining, an original named like an
error record; then through the real pipeline, with two workers and back-to-back uploads; and
an announcement lost with the bus, made good after a restart."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

import pixpipe.bus
from pixpipe.errors import PixpipeError
from pixpipe.events import Event, ObjectCreated
from pixpipe.jobs import variants
from pixpipe.pipeline.roles import Roles, serve
from pixpipe.recipe import Recipe

from . import images
from .job_ports import Ports
from .job_ports import upload as _upload
from .pipeline import API_KEY, eventually, free_port, make_settings, running

V1 = images.jpeg(images.photo(300, 200))
V2 = images.jpeg(images.photo(300, 100, seed=2))


def _size(data: bytes) -> tuple[int, int]:
    image = images.decoded(data)
    return image.width, image.height


class Hooked:
    """A store that runs ``hook(key)`` before each put (a re-upload landing right then)."""

    def __init__(self, store: Any, hook: Any) -> None:
        self._store, self._hook = store, hook

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def put(self, key: str, data: Any, **options: Any) -> Any:
        await self._hook(key)
        return await self._store.put(key, data, **options)


async def test_a_render_held_until_the_next_version_is_done_loses_to_it(ports: Ports) -> None:
    first = await _upload(ports, "k.jpg", V1)
    entered, release = asyncio.Event(), asyncio.Event()
    real = ports.ctx.render

    async def render(data: bytes, recipe: Recipe) -> Any:
        if data == V1:
            entered.set()
            await release.wait()
        return await real(data, recipe)

    ctx = dataclasses.replace(ports.ctx, render=render)
    slow = asyncio.create_task(variants.render_variants(ctx, first, 1))
    await asyncio.wait_for(entered.wait(), 10)
    second = await _upload(ports, "k.jpg", V2)
    assert (await variants.render_variants(ctx, second, 1)).state == "done"
    release.set()
    assert (await slow).state == "skipped"  # superseded: it writes neither state nor bytes
    state = await ctx.states.get("k.jpg")
    assert state is not None and (state.state, state.etag) == ("done", second.etag)
    assert _size(await ctx.stores.variants.get("s/k.jpg")) == (200, 67)


async def test_variants_landing_over_a_newer_upload_are_made_again(ports: Ports) -> None:
    first = await _upload(ports, "k.jpg", V1)
    stores = ports.ctx.stores

    async def reupload(key: str) -> None:
        if await stores.originals.get("k.jpg") == V1:
            await stores.originals.put("k.jpg", V2)  # while the first version's puts go on

    hooked = dataclasses.replace(stores, variants=Hooked(stores.variants, reupload))
    ctx = dataclasses.replace(ports.ctx, stores=hooked)
    assert (await variants.render_variants(ctx, first, 1)).state == "skipped"
    again = [e for e in ports.events if isinstance(e, ObjectCreated)]
    assert len(again) == 1 and again[0].etag != first.etag and again[0].again
    assert (await variants.render_variants(ctx, again[0], 1)).state == "done"
    assert _size(await stores.variants.get("s/k.jpg")) == (200, 67)
    state = await ctx.states.get("k.jpg")
    assert state is not None and state.etag == again[0].etag


async def test_a_reupload_landing_while_quarantining_survives(ports: Ports) -> None:
    broken = images.truncated(V1)
    first = await _upload(ports, "q.jpg", broken)
    stores = ports.ctx.stores

    async def reupload(key: str) -> None:
        if key.startswith("_pixpipe/errors/"):  # between the quarantine copy and the delete
            await stores.originals.put("q.jpg", V2)

    hooked = dataclasses.replace(stores, quarantine=Hooked(stores.quarantine, reupload))
    ctx = dataclasses.replace(ports.ctx, stores=hooked)
    with pytest.raises(PixpipeError) as raised:
        await variants.render_variants(ctx, first, 1)
    await variants.fail(ctx, "q.jpg", raised.value, 1, etag=first.etag)
    assert await stores.originals.get("q.jpg") == V2  # the newer upload is kept
    assert await stores.quarantine.get("q.jpg") == broken  # the failed one is safe


async def test_an_original_named_like_an_error_record_survives_its_siblings_failure(
    ports: Ports,
) -> None:
    junk = b"not an image, but an original all the same"
    for key, data in (("x.jpg.error.json", junk), ("x.jpg", images.truncated(V1))):
        event = await _upload(ports, key, data)
        with pytest.raises(PixpipeError) as raised:
            await variants.render_variants(ports.ctx, event, 1)
        await variants.fail(ports.ctx, key, raised.value, 1, etag=event.etag)
    quarantine = ports.ctx.stores.quarantine
    assert await quarantine.get("x.jpg.error.json") == junk  # quarantined, not overwritten
    assert json.loads(await quarantine.get("_pixpipe/errors/x.jpg.json"))["kind"] == "corrupt"
    record = json.loads(await quarantine.get("_pixpipe/errors/x.jpg.error.json.json"))
    assert record["kind"] == "unsupported"


# ---- through the pipeline -------------------------------------------------------------------


async def test_keys_uploaded_twice_back_to_back_with_two_workers_end_with_the_second(
    tmp_path: Path, nats_server_private
) -> None:
    settings = make_settings(tmp_path, nats_server_private.url)
    keys = [f"twice/{n:02d}.jpg" for n in range(20)]
    second = {n: images.jpeg(images.photo(320, 160, seed=n)) for n in range(20)}
    stop = asyncio.Event()
    async with running(settings, Roles(workers=1, port=free_port())) as pipe:
        other = asyncio.create_task(serve(settings, Roles(api=False, workers=1), stop))
        try:
            for n, key in enumerate(keys):
                for data in (images.jpeg(images.photo(320, 240, seed=n)), second[n]):
                    assert (await pipe.upload(key, data)).status_code == 201
            etags = {key: (await pipe.rt.stores.originals.head(key)).etag for key in keys}

            async def all_second() -> bool:
                docs = [await pipe.rt.states.get(key) for key in keys]
                return all(d and d.state == "done" and d.etag == etags[d.key] for d in docs)

            await eventually(all_second, timeout=120)
            for key in keys:
                variant = tmp_path / "variants" / "m" / key
                assert _size(variant.read_bytes()) == (320, 160), key
            assert (await pipe.upload("_pixpipe/errors/x.jpg", V1)).status_code == 400
        finally:
            stop.set()
            await asyncio.wait_for(other, 60)


async def test_an_announcement_lost_with_the_bus_is_made_good_after_a_restart(
    tmp_path: Path, nats_server_private, monkeypatch: pytest.MonkeyPatch
) -> None:
    retry = {"attempts": 3, "backoff_s": [3, 3], "reannounce_after_s": 1.0}
    settings = make_settings(tmp_path, nats_server_private.url, retry=retry)
    real = pixpipe.bus.publish_event
    lost: list[str] = []

    async def publish(js: Any, event: Event) -> Any:
        if isinstance(event, ObjectCreated) and not lost:
            lost.append(event.key)
            raise TimeoutError("the bus went away just then")
        return await real(js, event)

    monkeypatch.setattr(pixpipe.bus, "publish_event", publish)
    async with running(settings) as pipe:
        response = await pipe.upload("lost/once.jpg", V1)
        assert response.status_code == 503, response.text  # the client is told to retry…
        assert (await pipe.rt.states.get("lost/once.jpg")).state == "pending"  # …but it does not
    await asyncio.sleep(1.2)
    async with running(settings) as pipe:
        state = await pipe.wait("lost/once.jpg", timeout=60)
        assert (state.state, lost) == ("done", ["lost/once.jpg"])
        headers = {"Authorization": f"Bearer {API_KEY}"}
        listed = await pipe.http.get("/v1/images", headers=headers)
        assert any(d["key"] == "lost/once.jpg" and d["state"] == "done" for d in listed.json())
