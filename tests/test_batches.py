"""Batches on a real nats-server: uploads held until the batch is complete (or its deadline
passes), then released; ``pixpipe.batch.done`` once, with the counts; webhooks get it too."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from pixpipe.pipeline import orders as batches
from pixpipe.pipeline.orders import documents, lifecycle, outcomes
from pixpipe.pipeline.runtime import runtime

from . import images
from .pipeline import API_KEY, Pipeline, WebhookReceiver, eventually, make_settings, running

AUTH = {"Authorization": f"Bearer {API_KEY}"}
SMALL = [{"name": "s", "width": 48, "height": 48}, {"name": "t", "width": 24, "height": 24,
         "fit": "cover"}]  # fmt: skip


@pytest.fixture
def webhook():
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


async def _upload(pipe: Pipeline, key: str, data: bytes, batch: str) -> Any:
    return await pipe.http.post(
        "/v1/images", params={"key": key, "batch": batch}, content=data, headers=AUTH
    )


async def _batch(pipe: Pipeline, batch_id: str) -> dict[str, Any]:
    response = await pipe.http.get(f"/v1/batches/{batch_id}")
    assert response.status_code == 200, response.text
    return response.json()


async def _collect(pipe: Pipeline, subject: str) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []

    async def record(msg: Any) -> None:
        seen.append(json.loads(msg.data))

    await pipe.rt.nc.subscribe(subject, cb=record)
    return seen


async def test_batch_of_20_waits_for_the_20th_and_announces_done_once(
    tmp_path: Path, nats_server_private, webhook
):
    settings = make_settings(
        tmp_path, nats_server_private.url, variants=SMALL,
        webhooks=[{"url": webhook.url, "secret": "whsec_" + "c2VjcmV0LWtleS0xMjM0NTY="}],
    )
    async with running(settings) as pipe:
        done = await _collect(pipe, "pixpipe.batch.done")
        created = await pipe.http.post(
            "/v1/batches", json={"id": "order-20", "expected": 20}, headers=AUTH
        )
        assert created.status_code == 201, created.text
        assert created.json() == {"id": "order-20", "expected": 20, "received": 0,
                                  "state": "open", "done": 0, "failed": 0}  # fmt: skip
        keys = [f"orders/20/{n:02d}.jpg" for n in range(20)]
        photo = images.jpeg(images.photo(64, 48))
        bad = images.truncated(photo)  # one of them fails: counted as failed, not lost
        for key in keys[:19]:
            response = await _upload(pipe, key, bad if key == keys[7] else photo, "order-20")
            assert response.status_code == 201, response.text
        again = await _upload(pipe, keys[0], photo, "order-20")  # the same upload twice
        assert again.status_code == 201

        await asyncio.sleep(2)  # time enough for a worker to have picked any of them up
        state = await _batch(pipe, "order-20")
        assert (state["received"], state["state"]) == (19, "open")
        for key in keys[:19]:
            assert (await pipe.rt.states.get(key)).state == "pending"
        assert not (tmp_path / "variants").exists() or not any(
            p.is_file() for p in (tmp_path / "variants").rglob("*")
        ), "a held image was processed"
        assert pipe.subjects("pixpipe.image.processed") == []

        assert (await _upload(pipe, keys[19], photo, "order-20")).status_code == 201
        for key in keys:
            await pipe.wait(key)
        await eventually(lambda: len(done) == 1)
        await asyncio.sleep(2)  # redeliveries and the other events must not fire it again
        assert done == [{"id": "order-20", "done": 19, "failed": 1}]
        final = await _batch(pipe, "order-20")
        assert final == {"id": "order-20", "expected": 20, "received": 20, "state": "done",
                         "done": 19, "failed": 1}  # fmt: skip
        assert (tmp_path / "variants" / "s" / "orders" / "20" / "19.jpg").is_file()

        def batch_hooks() -> list[bytes]:
            return [b for h, b in webhook.calls if h["X-Pixpipe-Event"] == "pixpipe.batch.done"]

        await eventually(lambda: len(batch_hooks()) == 1)
        assert json.loads(batch_hooks()[0]) == done[0]


async def test_deadline_releases_a_short_batch_and_reports_the_missing(
    tmp_path: Path, nats_server_private
):
    settings = make_settings(tmp_path, nats_server_private.url, variants=SMALL)
    async with running(settings) as pipe:
        done = await _collect(pipe, "pixpipe.batch.done")
        body = {"id": "order-short", "expected": 5, "deadline_s": 2}
        assert (await pipe.http.post("/v1/batches", json=body, headers=AUTH)).status_code == 201
        keys = [f"orders/short/{n}.jpg" for n in range(3)]
        for key in keys:
            response = await _upload(pipe, key, images.jpeg(images.photo(40, 30)), "order-short")
            assert response.status_code == 201, response.text
        assert (await _batch(pipe, "order-short"))["state"] == "open"
        assert (await pipe.rt.states.get(keys[0])).state == "pending"

        await eventually(lambda: len(done) == 1, timeout=20)
        assert done == [{"id": "order-short", "done": 3, "failed": 0}]
        state = await _batch(pipe, "order-short")
        assert state["state"] == "done" and state["missing"] == 2 and state["received"] == 3
        for key in keys:
            assert (await pipe.rt.states.get(key)).state == "done"

        # Too late: the batch has moved on.
        late = await _upload(pipe, "orders/short/4.jpg", images.jpeg(), "order-short")
        assert late.status_code == 409


async def test_batch_requests_are_checked(tmp_path: Path, nats_server_private):
    settings = make_settings(tmp_path, nats_server_private.url, variants=SMALL)
    async with running(settings) as pipe:
        new = {"id": "order-1", "expected": 2}
        assert (await pipe.http.post("/v1/batches", json=new)).status_code == 401
        assert (await pipe.http.post("/v1/batches", json=new, headers=AUTH)).status_code == 201
        same = await pipe.http.post("/v1/batches", json=new, headers=AUTH)
        assert same.status_code == 201, "asking twice for the same batch is harmless"
        other = {"id": "order-1", "expected": 3}
        assert (await pipe.http.post("/v1/batches", json=other, headers=AUTH)).status_code == 409
        bad_id = {"id": "no spaces", "expected": 1}
        assert (await pipe.http.post("/v1/batches", json=bad_id, headers=AUTH)).status_code == 400
        zero = {"id": "order-0", "expected": 0}
        assert (await pipe.http.post("/v1/batches", json=zero, headers=AUTH)).status_code == 422
        assert (await pipe.http.get("/v1/batches/nope")).status_code == 404
        unknown = await _upload(pipe, "x.jpg", images.jpeg(images.photo(40, 30)), "nope")
        assert unknown.status_code == 404
        assert not await pipe.rt.stores.originals.exists("x.jpg")
        not_an_image = await _upload(pipe, "y.jpg", b"just text", "order-1")
        assert not_an_image.status_code == 415
        assert await pipe.rt.states.get("y.jpg") is None, "a refused upload was held"
        assert (await _batch(pipe, "order-1"))["received"] == 0


async def test_racing_outcomes_from_two_workers_fire_batch_done_once(
    tmp_path: Path, nats_server_private
):
    settings = make_settings(tmp_path, nats_server_private.url, variants=SMALL)
    # Two connections, as two worker processes would have; no roles run, so nothing else
    # reports outcomes: every image's outcome arrives twice, from both, all at once.
    async with runtime(settings) as one, runtime(settings) as two:
        seen: list[dict[str, Any]] = []

        async def record(msg: Any) -> None:
            seen.append(json.loads(msg.data))

        await one.nc.subscribe("pixpipe.batch.done", cb=record)
        await batches.create(one, "race", 4)
        keys = [f"race/{n}.jpg" for n in range(4)]
        for key in keys:
            await batches.reserve(one, "race", key)
            await one.stores.originals.put(key, images.jpeg(images.solid(8, 8)))
            await batches.hold(one, "race", key)
        etags = {key: (await one.states.get(key)).etag for key in keys}
        outcomes = {key: "failed" if n == 0 else "done" for n, key in enumerate(keys)}
        await asyncio.gather(*(
            batches.finished(rt, key, outcomes[key], etags[key])
            for rt in (one, two) for key in keys
        ))  # fmt: skip
        await asyncio.sleep(1)
        assert seen == [{"id": "race", "done": 3, "failed": 1}]
        assert await batches.status(one, "race") == {"id": "race", "expected": 4, "received": 4,
                                       "state": "done", "done": 3, "failed": 1}  # fmt: skip


async def test_watchdog_finishes_a_release_cut_short_by_a_crash(
    tmp_path: Path, nats_server_private, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(outcomes, "_RECHECK_S", 0.5)
    monkeypatch.setattr(lifecycle, "_CLAIM_S", 1.0)
    settings = make_settings(tmp_path, nats_server_private.url, variants=SMALL)
    async with running(settings) as pipe:
        done = await _collect(pipe, "pixpipe.batch.done")
        body = {"id": "order-cut", "expected": 2}
        assert (await pipe.http.post("/v1/batches", json=body, headers=AUTH)).status_code == 201
        photo = images.jpeg(images.photo(40, 30))
        assert (await _upload(pipe, "cut/0.jpg", photo, "order-cut")).status_code == 201
        release = batches.release

        async def dies(rt: Any, doc: Any) -> None:
            raise RuntimeError("the API process died here")

        # The last upload completes the batch, and the process dies before releasing it.
        monkeypatch.setattr(lifecycle, "release", dies)
        assert (await _upload(pipe, "cut/1.jpg", photo, "order-cut")).status_code == 500
        monkeypatch.setattr(lifecycle, "release", release)
        assert (await _batch(pipe, "order-cut"))["state"] == "processing"

        await eventually(lambda: len(done) == 1, timeout=20)
        assert done == [{"id": "order-cut", "done": 2, "failed": 0}]
        assert (await pipe.rt.states.get("cut/1.jpg")).state == "done"


async def test_watchdog_recounts_outcomes_whose_count_was_lost(tmp_path: Path, nats_server_private):
    settings = make_settings(tmp_path, nats_server_private.url, variants=SMALL)
    async with runtime(settings) as rt:
        seen: list[dict[str, Any]] = []

        async def record(msg: Any) -> None:
            seen.append(json.loads(msg.data))

        await rt.nc.subscribe("pixpipe.batch.done", cb=record)
        await batches.create(rt, "lost", 2)
        for key in ("lost/0.jpg", "lost/1.jpg"):
            await batches.reserve(rt, "lost", key)
            await rt.stores.originals.put(key, images.jpeg(images.solid(8, 8)))
            await batches.hold(rt, "lost", key)
        # Both outcomes written, then the process died before counting them.
        kv = await documents.bucket(rt)
        await kv.create(documents.outcome_key("lost", "lost/0.jpg"), b"done")
        await kv.create(documents.outcome_key("lost", "lost/1.jpg"), b"failed")
        assert (await batches.status(rt, "lost"))["state"] == "processing"

        assert await batches.check(rt, "lost") is not None  # it looks again later …
        await asyncio.sleep(0.5)
        assert seen == [{"id": "lost", "done": 1, "failed": 1}]  # … but the batch is over
        assert (await batches.status(rt, "lost"))["state"] == "done"
        assert await batches.check(rt, "lost") is None


async def test_a_batch_whose_deadline_outlives_the_kv_ttl_still_releases(
    tmp_path: Path, nats_server_private, monkeypatch: pytest.MonkeyPatch
):
    """A deadline may be longer than the bus keeps records (7 days; 4 s here): the watchdog
    writes the batch, its members' index and itself again before they would be dropped."""
    from pixpipe.bus import topology

    monkeypatch.setattr(topology, "MAX_AGE_S", 4.0)  # the buckets' TTL and the stream's age
    settings = make_settings(tmp_path, nats_server_private.url, variants=SMALL)
    async with running(settings) as pipe:
        created = await pipe.http.post(
            "/v1/batches", json={"id": "order-long", "expected": 2, "deadline_s": 10},
            headers=AUTH,
        )  # fmt: skip
        assert created.status_code == 201, created.text
        photo = images.jpeg(images.photo(64, 48))
        assert (await _upload(pipe, "long/0.jpg", photo, "order-long")).status_code == 201

        async def done() -> bool:
            return (await _batch(pipe, "order-long"))["state"] == "done"

        await eventually(done, timeout=60)
        state = await _batch(pipe, "order-long")
        assert (state["done"], state["failed"], state["missing"]) == (1, 0, 1)
        assert (await pipe.rt.states.get("long/0.jpg")).state == "done"
