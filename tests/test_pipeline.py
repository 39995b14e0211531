"""The event-driven pipeline on a real nats-server: upload → variants + backup + events,
idempotence, quarantine, ingest from folders and S3 notifications, signed webhooks."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from pixpipe import bus
from pixpipe.events import ObjectCreated
from pixpipe.storage import open_store

from . import images
from .pipeline import Pipeline, WebhookReceiver, eventually, make_settings, running

KEY = "users/42/IMG 0001.jpg"
AUTH = {"Authorization": "Bearer test-key"}
SIX = {"xl", "l", "m", "s", "sq-m", "sq-s"}


@pytest.fixture
def webhook():
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


def _store_overrides(scheme: str, tmp_path: Path, request: pytest.FixtureRequest) -> dict:
    if scheme == "file":
        return {}
    moto = request.getfixturevalue("aws_env")
    prefix = f"s3://{moto.bucket}/{uuid.uuid4().hex[:8]}"
    names = ("originals", "variants", "backup", "quarantine", "cache")
    return {"stores": {name: f"{prefix}/{name}" for name in names}}


@pytest.mark.parametrize("scheme", ["file", "s3"])
async def test_upload_becomes_variants_backup_event_and_done(
    scheme: str, tmp_path: Path, nats_server_private, webhook, request
):
    settings = make_settings(
        tmp_path, nats_server_private.url,
        webhooks=[{"url": webhook.url, "secret": "s3cret"}],
        **_store_overrides(scheme, tmp_path, request),
    )  # fmt: skip
    async with running(settings) as pipe:
        original = images.jpeg(images.photo(2400, 1600))
        response = await pipe.upload(KEY, original)
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["state"] == "pending" and set(body["variants"]) == SIX
        assert body["variants"]["m"].endswith("/images/m/users/42/IMG%200001.jpg")

        state = await pipe.wait(KEY)
        assert state.state == "done", state
        sizes = {n: (v.width, v.height) for n, v in state.variants.items()}
        assert sizes == {"xl": (2048, 1365), "l": (1280, 853), "m": (800, 533),
                         "s": (400, 267), "sq-m": (600, 600), "sq-s": (150, 150)}  # fmt: skip
        variant = await pipe.http.get("/images/m/users/42/IMG 0001.jpg")
        assert variant.status_code == 200 and variant.headers["content-type"] == "image/jpeg"
        assert images.decoded(variant.content).width == 800
        # Its plain URL revalidates; the versioned one in the state is immutable.
        assert variant.headers["cache-control"] == "public, max-age=60" and variant.headers["etag"]
        versioned = await pipe.http.get(
            (await pipe.http.get(f"/v1/images/{KEY}")).json()["variants"]["m"]["url"]
        )
        assert versioned.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert (await pipe.http.get(f"/images/original/{KEY}")).content == original

        await eventually(lambda: pipe.rt.stores.backup.exists(KEY))
        assert await pipe.rt.stores.backup.get(KEY) == original
        await eventually(lambda: len(pipe.subjects("pixpipe.image.processed")) == 1)
        processed = pipe.subjects("pixpipe.image.processed")[0]
        assert processed["key"] == KEY and {v["name"] for v in processed["variants"]} == SIX

        await eventually(lambda: len(webhook.calls) == 1)
        headers, payload = webhook.calls[0]
        expected = hmac.new(b"s3cret", payload, hashlib.sha256).hexdigest()
        assert headers["X-Pixpipe-Signature"] == f"sha256={expected}"
        assert json.loads(payload)["key"] == KEY
        # Standard Webhooks: the spec's own library verifies it, and refuses a forged body.
        receiver = Webhook("whsec_" + base64.b64encode(b"s3cret").decode())
        standard = {k.lower(): v for k, v in headers.items() if k.lower().startswith("webhook-")}
        assert set(standard) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
        assert receiver.verify(payload, standard)["key"] == KEY
        with pytest.raises(WebhookVerificationError):
            receiver.verify(payload.replace(KEY.encode(), b"users/42/forged.jpg"), standard)


async def test_same_event_three_times_makes_one_set_and_one_notification(
    tmp_path: Path, nats_server_private, webhook
):
    settings = make_settings(
        tmp_path, nats_server_private.url, webhooks=[{"url": webhook.url, "secret": "k"}]
    )
    async with running(settings) as pipe:
        await pipe.rt.stores.originals.put(KEY, images.jpeg(images.photo(1200, 800)))
        meta = await pipe.rt.stores.originals.head(KEY)
        event = ObjectCreated(key=KEY, size=meta.size, etag=meta.etag)
        for _ in range(3):  # the same upload announced three times: stored once
            await bus.publish_event(pipe.rt.js, event)
        await pipe.wait(KEY)
        made = _mtimes(tmp_path / "variants")
        for n in range(2):  # redelivered under other ids (a watcher, an S3 notification …)
            await bus.publish(pipe.rt.js, event.subject, event.to_dict(), f"again-{n}")
        await eventually(lambda: len(webhook.calls) >= 1)
        await _quiet(pipe)
        assert len(pipe.subjects("pixpipe.image.processed")) == 1
        assert len(webhook.calls) == 1
        assert _mtimes(tmp_path / "variants") == made, "variants were rewritten"
        assert len(made) == 6


async def test_corrupt_and_bomb_are_quarantined_listed_and_not_retried(
    tmp_path: Path, nats_server_private
):
    settings = make_settings(tmp_path, nats_server_private.url)
    async with running(settings) as pipe:
        bad = {"bad/half.jpg": images.truncated(images.jpeg()), "bad/bomb.png": images.png_bomb()}
        for key, data in bad.items():
            assert (await pipe.upload(key, data)).status_code == 201
        kinds = {key: (await pipe.wait(key)).error.kind for key in bad}
        assert kinds == {"bad/half.jpg": "corrupt", "bad/bomb.png": "too_large"}
        for key, data in bad.items():
            state = await pipe.rt.states.get(key)
            assert state.attempts == 1, "a permanent failure burnt a retry"
            assert await pipe.rt.stores.quarantine.get(key) == data
            record = json.loads(await pipe.rt.stores.quarantine.get(f"_pixpipe/errors/{key}.json"))
            assert record["kind"] == kinds[key] and record["message"]
            assert not await pipe.rt.stores.originals.exists(key), "original not moved"
        listed = (await pipe.http.get("/v1/failures", headers=AUTH)).json()
        assert {f["key"]: f["kind"] for f in listed} == kinds
        failed = pipe.subjects("pixpipe.image.failed")
        assert sorted(f["key"] for f in failed) == sorted(bad)

        # Retrying puts it back in line; it fails the same way, still without burning retries.
        retry = await pipe.http.post(
            "/v1/failures/bad/half.jpg/retry", headers={"Authorization": "Bearer test-key"}
        )
        assert retry.status_code == 202
        await eventually(lambda: len(pipe.subjects("pixpipe.image.failed")) == 3)
        state = await pipe.wait("bad/half.jpg")
        assert state.state == "failed" and state.attempts == 1


async def test_non_images_and_oversized_uploads_are_refused_at_the_door(
    tmp_path: Path, nats_server_private
):
    settings = make_settings(tmp_path, nats_server_private.url, limits={"max_input_bytes": 5000})
    async with running(settings) as pipe:
        assert (await pipe.upload("a.jpg", b"just some text")).status_code == 415
        assert (await pipe.upload("b.jpg", images.jpeg())).status_code == 413
        assert (await pipe.upload("../x.jpg", images.jpeg(images.solid(8, 8)))).status_code == 400
        unauthorised = await pipe.http.post("/v1/images", params={"key": "c.jpg"}, content=b"x")
        assert unauthorised.status_code == 401
        assert not await pipe.rt.stores.originals.exists("a.jpg")


async def test_file_dropped_into_the_originals_folder_is_processed(
    tmp_path: Path, nats_server_private
):
    settings = make_settings(tmp_path, nats_server_private.url)
    async with running(settings) as pipe:
        folder = pipe.rt.stores.originals.local_root
        assert folder is not None
        (folder / "dropped" / "by hand").mkdir(parents=True)
        (folder / "dropped" / "by hand" / "pic.png").write_bytes(images.png(images.photo(900, 600)))
        state = await pipe.wait("dropped/by hand/pic.png")
        assert state.state == "done"
        assert (tmp_path / "variants" / "m" / "dropped" / "by hand" / "pic.jpg").is_file()


async def test_an_upload_is_announced_once_though_the_folder_watcher_sees_it_land(
    tmp_path: Path, nats_server_private
):
    """The API announces its upload; the folder watcher then sees the file land in the
    originals folder, and must not publish it again (the bus would drop the duplicate, but
    it cost a state read and a publish per upload). A file dropped by hand after it, seen by
    the same watcher, is still announced: its announcement shows the watcher got that far."""
    settings = make_settings(tmp_path, nats_server_private.url)
    async with running(settings) as pipe:
        announced: list[str] = []

        async def record(msg: Any) -> None:
            announced.append(json.loads(msg.data)["key"])

        sub = await pipe.rt.nc.subscribe("pixpipe.object.created", cb=record)
        try:
            assert (await pipe.upload("up/loaded.jpg", images.jpeg())).status_code == 201
            folder = pipe.rt.stores.originals.local_root
            (folder / "up" / "dropped.jpg").write_bytes(images.jpeg(images.photo(320, 240)))
            await eventually(lambda: "up/dropped.jpg" in announced)
            assert (await pipe.wait("up/loaded.jpg")).state == "done"
        finally:
            await sub.unsubscribe()
        assert announced.count("up/loaded.jpg") == 1, announced
        assert announced.count("up/dropped.jpg") == 1, announced


async def test_a_folder_loop_in_the_originals_folder_keeps_the_watcher_working(
    tmp_path: Path, nats_server_private
):
    """Links to a parent folder, there before the start (the start-up scan) and made while
    watching: never followed, and the files dropped after them are still processed."""
    settings = make_settings(tmp_path, nats_server_private.url)
    root = tmp_path / "originals"
    (root / "early").mkdir(parents=True)
    (root / "early" / "up").symlink_to(root, target_is_directory=True)
    async with running(settings) as pipe:
        (root / "late").mkdir()
        (root / "late" / "again").symlink_to(root / "late", target_is_directory=True)
        (root / "late" / "pic.jpg").write_bytes(images.jpeg(images.photo(640, 480)))
        state = await pipe.wait("late/pic.jpg")
        assert state.state == "done"
        assert await pipe.rt.states.get("late/again/pic.jpg") is None


async def test_folder_moved_into_the_originals_folder_has_every_file_processed(
    tmp_path: Path, nats_server_private
):
    """inotify reports a folder moved in (or made and filled at once), never the files in it:
    the watcher walks a new folder for them."""
    settings = make_settings(tmp_path, nats_server_private.url)
    shoot = tmp_path / "elsewhere" / "shoot"
    (shoot / "day 2").mkdir(parents=True)
    keys = ["shoot/a.jpg", "shoot/b.png", "shoot/day 2/c.jpg"]
    for n, key in enumerate(keys):
        photo = images.photo(640, 480, seed=n)
        data = images.png(photo) if key.endswith(".png") else images.jpeg(photo)
        (tmp_path / "elsewhere" / key).write_bytes(data)
    async with running(settings) as pipe:
        folder = pipe.rt.stores.originals.local_root
        assert folder is not None
        shoot.rename(folder / "shoot")
        for key in keys:
            assert (await pipe.wait(key)).state == "done", key


async def test_s3_notification_json_is_processed(
    tmp_path: Path, nats_server_private, aws_env, request
):
    settings = make_settings(
        tmp_path, nats_server_private.url, **_store_overrides("s3", tmp_path, request)
    )
    async with running(settings) as pipe:
        originals = settings.store_url("originals")
        bucket, _, prefix = originals.removeprefix("s3://").partition("/")
        store = open_store(originals)
        keys = ["from s3/IMG 0002.jpg", "from nats/IMG 0003.jpg"]
        etags = [await store.put(key, images.jpeg(images.photo(640, 480))) for key in keys]
        # AWS's shape: keys URL-encoded with '+' for spaces.
        via_http = _s3_event(bucket, f"{prefix}/from+s3/IMG+0002.jpg", etags[0])
        response = await pipe.http.post(
            "/v1/events/s3", content=json.dumps(via_http),
            headers={"Authorization": "Bearer test-key"},
        )  # fmt: skip
        assert response.status_code == 202, response.text
        via_nats = _s3_event(bucket, f"{prefix}/from+nats/IMG+0003.jpg", etags[1])
        await pipe.rt.nc.publish("pixpipe.ingest.s3", json.dumps(via_nats).encode())
        for key in keys:
            assert (await pipe.wait(key)).state == "done", key


async def test_webhook_retries_reach_the_receiver_after_it_comes_back(
    tmp_path: Path, nats_server_private, webhook
):
    webhook.failing = True
    settings = make_settings(
        tmp_path, nats_server_private.url, webhooks=[{"url": webhook.url, "secret": "k"}],
        retry={"attempts": 4, "backoff_s": [1, 1, 1]},
    )  # fmt: skip
    async with running(settings) as pipe:
        await pipe.upload(KEY, images.jpeg(images.photo(800, 600)))
        await pipe.wait(KEY)
        await eventually(lambda: len(pipe.subjects("pixpipe.image.processed")) == 1)
        assert webhook.calls == []
        webhook.failing = False
        await eventually(lambda: len(webhook.calls) == 1, timeout=20)
        assert json.loads(webhook.calls[0][1])["key"] == KEY


async def test_webhook_that_stays_down_leaves_a_dead_letter(
    tmp_path: Path, nats_server_private, webhook
):
    webhook.failing = True
    settings = make_settings(
        tmp_path, nats_server_private.url, webhooks=[{"url": webhook.url, "secret": "k"}],
        retry={"attempts": 2, "backoff_s": [1]},
    )  # fmt: skip
    async with running(settings) as pipe:
        await pipe.upload(KEY, images.jpeg(images.photo(800, 600)))
        await pipe.wait(KEY)
        letters = tmp_path / "quarantine" / "_pixpipe" / "deadletters" / "notify"
        await eventually(lambda: letters.is_dir() and any(letters.iterdir()), timeout=20)
        record = json.loads(next(letters.iterdir()).read_text())
        assert record["event"]["key"] == KEY and record["kind"] == "transient"


def _s3_event(bucket: str, encoded_key: str, etag: str | None = None) -> dict[str, Any]:
    return {"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventName": "ObjectCreated:Put",
        "s3": {"s3SchemaVersion": "1.0",
               "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
               "object": {"key": encoded_key, "size": 1234, "eTag": etag or uuid.uuid4().hex}},
    }]}  # fmt: skip


def _mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


async def _quiet(pipe: Pipeline, seconds: float = 2.0) -> None:
    """Give redeliveries time to happen (they must change nothing)."""
    import asyncio

    await asyncio.sleep(seconds)


async def test_a_full_event_stream_refuses_uploads_with_503_and_loses_none(
    tmp_path: Path, nats_server_private
):
    """``[bus] max_bytes``: when the stream is full, new events are refused (the client is
    told to retry), never old unread ones dropped."""
    settings = make_settings(tmp_path, nats_server_private.url, bus={
        "url": nats_server_private.url, "max_bytes": 8192})  # fmt: skip
    async with running(settings) as pipe:
        photo = images.jpeg(images.photo(64, 48))
        statuses = [(await pipe.upload(f"full/{n:02d}.jpg", photo)) for n in range(40)]
        refused = [r for r in statuses if r.status_code != 201]
        assert refused, "the stream never filled up"
        assert {r.status_code for r in refused} == {503}
        assert "full" in refused[0].json()["detail"]
        accepted = [f"full/{n:02d}.jpg" for n, r in enumerate(statuses) if r.status_code == 201]
        for key in accepted:  # every event that got in is processed: none was dropped
            assert (await pipe.wait(key)).state == "done", key


def test_a_webhook_without_a_secret_is_refused_when_the_settings_load(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="secret"):
        make_settings(tmp_path, "nats://127.0.0.1:1", webhooks=[{"url": "http://app/hook"}])
    with pytest.raises(ValidationError, match="secret"):
        make_settings(tmp_path, "nats://127.0.0.1:1",
                      webhooks=[{"url": "http://app/hook", "secret": ""}])  # fmt: skip


async def test_event_streams_are_capped_and_a_closed_one_frees_its_place(
    tmp_path: Path, nats_server_private
):
    settings = make_settings(tmp_path, nats_server_private.url,
                             api={"keys": ["test-key"], "max_event_streams": 1})  # fmt: skip
    async with running(settings) as pipe:
        async with pipe.http.stream("GET", "/v1/events") as first:
            assert first.status_code == 200
            assert await anext(first.aiter_lines()) == ": connected"
            second = await pipe.http.get("/v1/events")
            assert second.status_code == 503 and second.headers["retry-after"] == "5"

        async def a_place_again() -> bool:
            async with pipe.http.stream("GET", "/v1/events") as third:
                return third.status_code == 200

        await eventually(a_place_again, timeout=10)


async def test_fallback_to_the_original_never_lists_a_folder(
    tmp_path: Path, nats_server_private, monkeypatch: pytest.MonkeyPatch
):
    from pixpipe.storage import Store

    settings = make_settings(tmp_path, nats_server_private.url)
    async with running(settings) as pipe:
        original = images.jpeg(images.photo(300, 200))
        assert (await pipe.upload("fall/IMG 0001.JPG", original)).status_code == 201

        def no_listing(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("a fallback listed the originals folder")

        monkeypatch.setattr(Store, "list", no_listing)
        served = await pipe.http.get("/images/later/fall/IMG 0001.jpg?fallback=original")
        assert served.status_code == 200 and served.content == original
        assert served.headers["cache-control"] == "no-store"
        gone = await pipe.http.get("/images/later/fall/none.jpg?fallback=original")
        assert gone.status_code == 404


async def test_two_retries_at_once_move_the_original_back_once(
    tmp_path: Path, nats_server_private
):
    """A double click on Retry: one retry wins (202), the other is told (409); nothing lost."""
    settings = make_settings(tmp_path, nats_server_private.url)
    async with running(settings) as pipe:
        broken = images.truncated(images.jpeg(images.photo(300, 200)))
        assert (await pipe.upload("twice/broken.jpg", broken)).status_code == 201
        assert (await pipe.wait("twice/broken.jpg")).state == "failed"
        url = "/v1/failures/twice/broken.jpg/retry"
        answers = await asyncio.gather(*(pipe.http.post(url, headers=AUTH) for _ in range(2)))
        assert sorted(r.status_code for r in answers) == [202, 409]

        async def failed_again() -> bool:
            state = await pipe.rt.states.get("twice/broken.jpg")
            return bool(state and state.state == "failed" and state.attempts == 1)

        await eventually(failed_again, timeout=30)
        assert await pipe.rt.stores.quarantine.get("twice/broken.jpg") == broken


async def test_a_render_longer_than_the_ack_wait_is_not_delivered_twice(
    tmp_path: Path, nats_server_private
):
    """With a short ack wait (the first backoff step: 0.5 s here), the worker tells the server
    it is still at work often enough: a render of several times that is delivered once."""
    # AVIF at 4 MP: a second or more to encode (at 2 MP, AVIF's effort 3 took only 0.7 s)
    slow = [{"name": "a", "width": 2400, "height": 2400, "format": "avif"}]
    settings = make_settings(tmp_path, nats_server_private.url, variants=slow,
                             retry={"attempts": 3, "backoff_s": [0.5, 0.5]})  # fmt: skip
    key = "slow/big.jpg"
    async with running(settings) as pipe:
        assert (await pipe.upload(key, images.jpeg(images.photo(2400, 1800)))).status_code == 201
        state = await pipe.wait(key, timeout=120)
        assert state.state == "done" and state.attempts == 1, state
        assert (state.duration_ms or 0) > 1000  # twice the ack wait at least, or it proves nothing
        info = await pipe.rt.js.consumer_info(bus.STREAM, "variants")
        deliveries = info.delivered.consumer_seq if info.delivered else None
        assert deliveries == 1, f"delivered {deliveries} times ({state.duration_ms:.0f} ms render)"
