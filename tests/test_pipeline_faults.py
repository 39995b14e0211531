"""Faults, for real: worker processes killed mid-image, nats-server restarted under load, an S3
endpoint that goes away for a while, a render process killed under ``pixpipe up``, and
``pixpipe up`` itself started, used and stopped as a user would. Nothing is ever lost: every
accepted upload ends ``done``, with all its variants and one ``image.processed``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from pixpipe import bus
from pixpipe.config import Limits
from pixpipe.errors import Kind, PixpipeError
from pixpipe.events import ObjectCreated
from pixpipe.jobs.pool import RenderPool
from pixpipe.pipeline.ingest import publish_created
from pixpipe.pipeline.roles import Roles
from pixpipe.pipeline.states import KvStates
from pixpipe.recipe import DEFAULT_RECIPE, Recipe

from . import images
from .pipeline import (
    API_KEY,
    FlakyProxy,
    Pipeline,
    eventually,
    free_port,
    make_settings,
    running,
)
from .processes import Proc, bus_of, busy, children_of, processed_events

AUTH_HEADERS = {"Authorization": f"Bearer {API_KEY}"}
# Heavy on CPU and timing: run these one after another on one xdist worker.
pytestmark = pytest.mark.xdist_group("pipeline-faults")

SIX = ("xl", "l", "m", "s", "sq-m", "sq-s")
BIG = "big/slow one.png"  # renders for a couple of seconds: long enough to be killed mid-way
SHORT_RETRIES = "[retry]\nattempts = 3\nbackoff_s = [2, 2]\n"
# Longer than a publish's timeout (5 s): requests in flight fail, clients retry.
OUTAGE_S = 6


@pytest.fixture(scope="module")
def big_png() -> bytes:
    """8000×8000 pixels, 2 MB: quick to make, slow to render (PNG has no shrink-on-load)."""
    return images.png(images.solid(8000, 8000), compression=1)


@pytest.fixture(scope="module")
def small_jpeg() -> bytes:
    return images.jpeg(images.photo(1200, 800))


# --- helpers ---------------------------------------------------------------------------------


async def wait_all(states: KvStates, keys: list[str], timeout: float = 90.0) -> dict[str, Any]:
    """Every key's state document once each is ``done`` or ``failed``."""
    docs: dict[str, Any] = {}

    async def settled() -> bool:
        for key in keys:
            with contextlib.suppress(Exception):  # the bus may be coming back
                docs[key] = await states.get(key)
        return all(d and d.state in ("done", "failed") for d in docs.values())

    with contextlib.suppress(AssertionError):
        await eventually(settled, timeout=timeout)
    assert len(docs) == len(keys) and all(d and d.state == "done" for d in docs.values()), {
        k: d and (d.state, d.error, d.attempts) for k, d in docs.items()
    }
    return docs


def variant_files(variants_dir: Path, key: str) -> set[str]:
    """The variants made for ``key`` (an original rendered to JPEG), by name."""
    stem = key.rsplit(".", 1)[0]
    return {name for name in SIX if (variants_dir / name / f"{stem}.jpg").is_file()}


async def _up_started(proc: Proc) -> tuple[str, str]:
    """The URL and the API key ``pixpipe up`` prints once it serves."""
    url = (await proc.wait_for(r"pixpipe is up at (http://\S+)")).group(1)
    key = (await proc.wait_for(r"API key: (\S+)")).group(1)
    return url, key


# --- 1. a worker process killed mid-image ---------------------------------------------------


async def test_worker_killed_mid_image_is_redelivered_to_the_next_worker(
    tmp_path: Path, nats_server_private, spawn, big_png: bytes, small_jpeg: bytes
):
    settings = make_settings(tmp_path, nats_server_private.url)
    # The worker is configured from the environment alone, against the shared bus and stores.
    env = {
        "PIXPIPE_DATA_DIR": str(tmp_path), "PIXPIPE_BUS__URL": nats_server_private.url,
        "PIXPIPE_RETRY__ATTEMPTS": "3", "PIXPIPE_RETRY__BACKOFF_S": "[3, 3]",
    }  # fmt: skip
    uploads = {BIG: big_png, "small/a.jpg": small_jpeg, "small/b.jpg": small_jpeg}
    async with running(settings, Roles(worker=False, port=free_port())) as pipe:
        first = spawn("worker", "--workers", "1", env=env)
        await first.wait_for("worker ready")
        for key, data in uploads.items():
            assert (await pipe.upload(key, data)).status_code == 201
        await pipe.wait(BIG, ("processing",))
        first.kill()
        killed = await pipe.rt.states.get(BIG)
        assert killed and killed.state == "processing", "the image was not killed mid-way"

        spawn("worker", "--workers", "1", env=env)
        docs = {key: await pipe.wait(key) for key in uploads}
        assert {k: d.state for k, d in docs.items()} == dict.fromkeys(uploads, "done")
        assert docs[BIG].attempts == 2, "the killed delivery was not the one redelivered"
        for key in uploads:
            assert variant_files(tmp_path / "variants", key) == set(SIX), key
            assert (
                await pipe.http.get(f"/images/m/{key.rsplit('.', 1)[0]}.jpg")
            ).status_code == 200
        await asyncio.sleep(2)  # time for a stray second delivery to show up
        processed = sorted(key for key, _ in await processed_events(pipe.rt.js))
        assert processed == sorted(uploads), "exactly one image.processed per key"


async def test_image_that_kills_every_worker_ends_failed_not_stuck_and_can_be_retried(
    tmp_path: Path, nats_server_private, spawn, big_png: bytes
):
    """Two deliveries allowed, two workers killed mid-image: the server gives up, and the
    next worker records it (from the kept advisory) as a transient failure."""
    settings = make_settings(tmp_path, nats_server_private.url)
    env = {
        "PIXPIPE_DATA_DIR": str(tmp_path), "PIXPIPE_BUS__URL": nats_server_private.url,
        "PIXPIPE_RETRY__ATTEMPTS": "2", "PIXPIPE_RETRY__BACKOFF_S": "[2]",
    }  # fmt: skip
    async with running(settings, Roles(worker=False, port=free_port())) as pipe:
        assert (await pipe.upload(BIG, big_png)).status_code == 201
        for attempt in (1, 2):
            worker = spawn("worker", "--workers", "1", env=env)

            async def rendering(attempt: int = attempt) -> bool:
                doc = await pipe.rt.states.get(BIG)
                return bool(doc and doc.state == "processing" and doc.attempts == attempt)

            await eventually(rendering, timeout=60)
            worker.kill()

        spawn("worker", "--workers", "1", env=env)
        doc = await pipe.wait(BIG, timeout=60)
        assert doc.state == "failed", doc
        assert (doc.error.kind, doc.attempts) == ("transient", 2), doc
        assert await pipe.rt.stores.originals.exists(BIG), "a transient failure moved it"
        failures = (await pipe.http.get("/v1/failures", headers=AUTH_HEADERS)).json()
        assert [(f["key"], f["kind"]) for f in failures] == [(BIG, "transient")]

        retried = await pipe.http.post(
            f"/v1/failures/{BIG}/retry", headers={"Authorization": f"Bearer {API_KEY}"}
        )
        assert retried.status_code == 202, retried.text
        doc = await pipe.wait(BIG, ("done",), timeout=60)
        assert variant_files(tmp_path / "variants", BIG) == set(SIX)


# --- 2. nats-server restarted under load ----------------------------------------------------


async def test_nats_server_restart_mid_run_loses_nothing(
    tmp_path: Path, nats_server_private, small_jpeg: bytes
):
    settings = make_settings(tmp_path, nats_server_private.url)
    keys = [f"burst/{n:02d}.jpg" for n in range(10)]
    accepted: list[str] = []
    refused: list[int] = []  # the statuses of refused uploads
    async with running(settings) as pipe:

        async def uploads() -> None:
            """A client that keeps uploading, and retries what the service refuses."""
            for key in keys:
                deadline = time.monotonic() + 30
                while (response := await _try_upload(pipe, key, small_jpeg)) != 201:
                    assert time.monotonic() < deadline, f"{key} never accepted: {response}"
                    if isinstance(response, int):
                        refused.append(response)
                    await asyncio.sleep(0.3)
                accepted.append(key)
                await asyncio.sleep(0.15)

        client = asyncio.create_task(uploads())
        await eventually(lambda: len(accepted) >= 3)
        nats_server_private.kill()  # SIGKILL: a crash, not a shutdown
        await asyncio.sleep(OUTAGE_S)
        nats_server_private.restart()
        await client

        docs = await wait_all(pipe.rt.states, keys, timeout=120)
        assert sorted(accepted) == keys
        # While the bus is away an upload is refused as transient: 503, never a 500.
        assert refused and set(refused) == {503}, refused
        assert all(variant_files(tmp_path / "variants", k) == set(SIX) for k in keys)
        assert {d.state for d in docs.values()} == {"done"}
        # An image whose event was cut off with the server gets it on its redelivery. A
        # client's retried upload may have stored the original twice: two objects (two
        # etags), two events; never two for one object, never none for the last one.
        final = {(key, doc.etag) for key, doc in docs.items()}

        async def announced() -> bool:
            return final <= set(await processed_events(pipe.rt.js))

        with contextlib.suppress(AssertionError):
            await eventually(announced, timeout=30)
        events = await processed_events(pipe.rt.js)
        assert final <= set(events), "an image.processed is missing"
        assert len(events) == len(set(events)), "an image.processed was sent twice"


async def test_file_dropped_while_the_bus_is_down_is_processed_once_it_is_back(
    tmp_path: Path, nats_server_private, small_jpeg: bytes
):
    settings = make_settings(tmp_path, nats_server_private.url)
    key = "dropped/while down.jpg"
    async with running(settings) as pipe:
        folder = pipe.rt.stores.originals.local_root
        assert folder is not None
        nats_server_private.kill()
        (folder / "dropped").mkdir()
        (folder / "dropped" / "while down.jpg").write_bytes(small_jpeg)
        await asyncio.sleep(OUTAGE_S)  # the watcher saw it, and could not announce it
        nats_server_private.restart()
        doc = await pipe.wait(key, timeout=60)
        assert doc.state == "done"
        assert variant_files(tmp_path / "variants", key) == set(SIX)


async def _try_upload(pipe: Pipeline, key: str, data: bytes) -> int | str:
    try:
        return (await pipe.upload(key, data)).status_code
    except httpx.HTTPError as exc:
        return repr(exc)


# --- 3. the S3 endpoint goes away for a while ------------------------------------------------


@dataclass
class S3Behind:
    """Stores on the moto server, reached only through a proxy that can go down."""

    proxy: FlakyProxy
    moto: Any
    prefix: str  # in the bucket: {prefix}/originals, {prefix}/variants, …

    def settings(self, tmp_path: Path, nats_url: str, **overrides: Any) -> Any:
        names = ("originals", "variants", "backup", "quarantine", "cache")
        stores = {name: f"s3://{self.moto.bucket}/{self.prefix}/{name}" for name in names}
        return make_settings(tmp_path, nats_url, stores=stores, **overrides)

    async def arrives(self, pipe: Pipeline, key: str, data: bytes) -> None:
        """The original lands in the bucket by another road (moto directly), and pixpipe
        hears of it, as from a bucket notification."""
        bucket, name = self.moto.bucket, f"{self.prefix}/originals/{key}"
        put = await asyncio.to_thread(
            self.moto.client().put_object, Bucket=bucket, Key=name, Body=data
        )
        event = ObjectCreated(key=key, size=len(data), etag=put["ETag"].strip('"'))
        await publish_created(pipe.rt, event)

    def stored(self) -> set[str]:
        listed = self.moto.client().list_objects_v2(
            Bucket=self.moto.bucket, Prefix=f"{self.prefix}/"
        )
        return {o["Key"].split("/", 1)[1] for o in listed.get("Contents", [])}


@pytest.fixture
async def s3_behind(aws_env, monkeypatch) -> AsyncIterator[S3Behind]:
    moto = urlsplit(aws_env.endpoint)
    proxy = FlakyProxy(moto.hostname or "127.0.0.1", moto.port or 80)
    await proxy.up()
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)  # every store request goes through it
    yield S3Behind(proxy, aws_env, uuid.uuid4().hex[:8])
    await proxy.down()


async def test_s3_outage_is_retried_with_backoff_then_finishes(
    tmp_path: Path, nats_server_private, s3_behind: S3Behind, small_jpeg: bytes
):
    retry = {"attempts": 6, "backoff_s": [2, 2, 2, 2, 2]}
    settings = s3_behind.settings(tmp_path, nats_server_private.url, retry=retry)
    key = "during/the outage.jpg"
    async with running(settings) as pipe:
        await s3_behind.proxy.down()
        await s3_behind.arrives(pipe, key, small_jpeg)
        attempts_seen: dict[int, float] = {}

        async def retried_twice() -> bool:
            doc = await pipe.rt.states.get(key)
            if doc and doc.state == "processing":
                attempts_seen.setdefault(doc.attempts, time.monotonic())
            return len(attempts_seen) >= 3

        await eventually(retried_twice, timeout=30)
        doc = await pipe.rt.states.get(key)
        assert doc.state == "processing", "gave up (or finished) while S3 was down"
        gaps = [attempts_seen[n + 1] - attempts_seen[n] for n in sorted(attempts_seen)[:-1]]
        assert min(gaps) >= 1.5, f"retried without backoff: {gaps}"

        await s3_behind.proxy.up()
        doc = await pipe.wait(key, timeout=60)
        assert doc.state == "done", doc
        assert doc.attempts >= 3
        stem = key.rsplit(".", 1)[0]
        assert {f"variants/{name}/{stem}.jpg" for name in SIX} <= s3_behind.stored()
        await eventually(lambda: pipe.rt.stores.backup.exists(key))
        assert len(pipe.subjects("pixpipe.image.processed")) == 1


async def test_s3_outage_longer_than_the_retries_fails_transient_keeps_the_original(
    tmp_path: Path, nats_server_private, s3_behind: S3Behind, small_jpeg: bytes
):
    retry = {"attempts": 2, "backoff_s": [1]}
    settings = s3_behind.settings(tmp_path, nats_server_private.url, retry=retry)
    key = "after/a long outage.jpg"
    async with running(settings) as pipe:
        await s3_behind.proxy.down()
        await s3_behind.arrives(pipe, key, small_jpeg)

        async def exhausted() -> bool:
            doc = await pipe.rt.states.get(key)
            return bool(doc and doc.attempts == 2)

        await eventually(exhausted, timeout=30)
        await asyncio.sleep(3)  # given up; the failure waits for a place to be recorded
        await s3_behind.proxy.up()

        doc = await pipe.wait(key, ("failed",), timeout=30)
        assert (doc.error.kind, doc.attempts) == ("transient", 2), doc
        stored = s3_behind.stored()
        assert f"originals/{key}" in stored, "a transient failure must not move the original"
        assert f"quarantine/_pixpipe/errors/{key}.json" in stored
        failures = (await pipe.http.get("/v1/failures", headers=AUTH_HEADERS)).json()
        assert [(f["key"], f["kind"]) for f in failures] == [(key, "transient")]

        retried = await pipe.http.post(
            f"/v1/failures/{key}/retry", headers={"Authorization": f"Bearer {API_KEY}"}
        )
        assert retried.status_code == 202, retried.text
        doc = await pipe.wait(key, ("done",), timeout=30)
        await eventually(lambda: pipe.rt.stores.backup.exists(key))
        assert f"quarantine/_pixpipe/errors/{key}.json" not in s3_behind.stored()


# --- 4. pixpipe up supervises its render processes, stops cleanly, resumes ------------------


async def test_up_replaces_a_killed_render_process_and_retries_its_image(
    tmp_path: Path, spawn, big_png: bytes, small_jpeg: bytes
):
    (tmp_path / "pixpipe.toml").write_text(SHORT_RETRIES)
    data_dir = tmp_path / "data"
    up = spawn("up", "--data-dir", data_dir, "--port", free_port(), "--workers", "1")
    url, api_key = await _up_started(up)
    auth = {"Authorization": f"Bearer {api_key}"}

    async def upload(key: str, data: bytes) -> None:
        response = await http.post("/v1/images", params={"key": key}, content=data, headers=auth)
        assert response.status_code == 201, response.text

    async with httpx.AsyncClient(base_url=url, timeout=30) as http, bus_of(data_dir) as (_, states):
        await upload("before/the crash.jpg", small_jpeg)  # the render process is up and idle
        await wait_all(states, ["before/the crash.jpg"], timeout=60)
        (renderer,) = up.children()
        await upload(BIG, big_png)
        await busy(renderer)  # at work on the big image
        os.kill(renderer, signal.SIGKILL)

        (doc,) = (await wait_all(states, [BIG], timeout=60)).values()
        assert doc.attempts == 2, "the image was not retried after its renderer died"
        assert variant_files(data_dir / "variants", BIG) == set(SIX)
        replacement = up.children()
        assert len(replacement) == 1 and replacement != [renderer], "renderer not replaced"
        # The new renderer takes the next image as usual: first time, no retry.
        await upload("after/the crash.jpg", small_jpeg)
        (doc,) = (await wait_all(states, ["after/the crash.jpg"], timeout=60)).values()
        assert doc.attempts == 1
    code, _ = await up.terminate()
    assert code == 0, up.output


async def test_render_pool_survives_a_process_killed_before_it_took_its_task(small_jpeg: bytes):
    """pebble declares a whole pool broken when a process dies before acknowledging a task:
    the pool is the fault, not the image, so a fresh pool renders it (no delivery spent), and
    every image after it too."""
    before = set(children_of(os.getpid()))
    pool = RenderPool(1, Limits())  # its process starts now, in the background
    try:
        first = asyncio.ensure_future(pool.render(small_jpeg, DEFAULT_RECIPE))
        await eventually(lambda: set(children_of(os.getpid())) - before, timeout=10)
        (starting,) = set(children_of(os.getpid())) - before  # still importing libvips
        os.kill(starting, signal.SIGKILL)
        try:
            rendered = await first
        except PixpipeError as failed:  # the process died holding it: the bus retries that
            assert failed.kind is Kind.TRANSIENT
        else:
            assert {o.name for o in rendered.variants} == set(SIX)
        rendered = await pool.render(small_jpeg, DEFAULT_RECIPE)
        assert {o.name for o in rendered.variants} == set(SIX)
    finally:
        await asyncio.to_thread(pool.close)


async def test_a_render_pool_stopping_does_not_start_its_processes_again(small_jpeg: bytes):
    """A SIGTERM to the process group kills the render processes with the rest: while
    stopping, a broken pool answers transient at once instead of starting new processes
    (whose start, and the old pool's join, held `pixpipe up`'s exit past its grace)."""
    stopping = asyncio.Event()
    others = set(children_of(os.getpid()))  # other tests' render processes: left alone
    pool = RenderPool(1, Limits(), stopping=stopping)
    try:
        await pool.render(small_jpeg, DEFAULT_RECIPE)  # its process is up
        ours = set(children_of(os.getpid())) - others
        for pid in ours:
            os.kill(pid, signal.SIGKILL)
        stopping.set()
        started = time.monotonic()
        with pytest.raises(PixpipeError) as refused:
            for _ in range(3):  # the pool may notice its dead process on the first try
                await pool.render(small_jpeg, DEFAULT_RECIPE)
        assert refused.value.kind is Kind.TRANSIENT
        assert time.monotonic() - started < 5
        started_since = set(children_of(os.getpid())) - others - ours
        assert not started_since, "render processes started while stopping"
    finally:
        await asyncio.to_thread(pool.close)


async def test_a_render_queued_as_its_pool_breaks_is_answered(small_jpeg: bytes):
    """pebble orphans a task its scheduler thread registers just after the pool broke (its
    process died while idle): nothing ever answers it. The interleaving is forced here by
    holding the old pool's scheduler until the pool is broken; the render must still be
    answered, by a fresh pool, instead of waiting forever (a CI run once hung on this)."""
    others = set(children_of(os.getpid()))
    pool = RenderPool(1, Limits())
    try:
        await pool.render(small_jpeg, DEFAULT_RECIPE)
        old = pool._pool
        manager = old._pool_manager
        schedule = manager.schedule

        def schedule_once_broken(task: Any) -> None:
            while old.active:  # the scheduler thread waits for the pool manager to give up
                time.sleep(0.01)
            schedule(task)

        manager.schedule = schedule_once_broken
        for pid in set(children_of(os.getpid())) - others:
            os.kill(pid, signal.SIGKILL)
        rendered = await asyncio.wait_for(pool.render(small_jpeg, DEFAULT_RECIPE), 60)
        assert [v.name for v in rendered.variants] == list(SIX)
        assert pool._pool is not old, "the broken pool was not replaced"
    finally:
        await asyncio.to_thread(pool.close)


async def test_a_render_pool_starts_its_processes_before_the_first_image():
    """The render processes start with the pool, not at its first image: a first upload
    does not wait a second or more for their start and imports (the latency benchmark's
    first upload took 3.7 s)."""
    others = set(children_of(os.getpid()))
    pool = RenderPool(2, Limits())
    try:
        await eventually(lambda: len(set(children_of(os.getpid())) - others) >= 2)
    finally:
        await asyncio.to_thread(pool.close)


async def test_a_render_process_reads_a_local_original_itself(tmp_path: Path, small_jpeg: bytes):
    """A local original is handed over as its path (its bytes never pass through the
    worker's own process): read there under the same size limit, and a file gone by then is
    ``missing``, one grown past the limit ``too_large``, each failing alone."""
    original = tmp_path / "a.jpg"
    original.write_bytes(small_jpeg)
    pool = RenderPool(1, Limits(max_input_bytes=len(small_jpeg)))
    try:
        rendered = await pool.render(original, DEFAULT_RECIPE)
        assert [v.name for v in rendered.variants] == list(SIX)
        assert rendered.source.width == images.decoded(small_jpeg).width
        original.write_bytes(small_jpeg + b"\0")
        with pytest.raises(PixpipeError) as grown:
            await pool.render(original, DEFAULT_RECIPE)
        assert grown.value.kind is Kind.TOO_LARGE
        with pytest.raises(PixpipeError) as gone:
            await pool.render(tmp_path / "gone.jpg", DEFAULT_RECIPE)
        assert gone.value.kind is Kind.MISSING
    finally:
        await asyncio.to_thread(pool.close)


async def test_a_render_over_the_memory_ceiling_fails_alone_and_the_process_lives_on(
    small_jpeg: bytes,
):
    """``[limits] max_memory_mb`` caps each render process: an image that needs more is
    ``too_large`` (an allocation failed), and the same process takes the next image."""
    big = images.png(images.solid(9000, 9000), compression=1)  # 243 MB of pixels at full size
    full = Recipe.parse(["full=9000x9000"])
    pool = RenderPool(1, Limits(max_memory_mb=150))
    try:
        with pytest.raises(PixpipeError) as failed:
            await pool.render(big, full)
        assert failed.value.kind is Kind.TOO_LARGE and "memory" in failed.value.message
        before = set(children_of(os.getpid()))
        rendered = await pool.render(small_jpeg, full)
        assert rendered.variants[0].width == images.decoded(small_jpeg).width
        assert set(children_of(os.getpid())) == before, "the render process was replaced"
    finally:
        await asyncio.to_thread(pool.close)


@pytest.mark.parametrize("group", [False, True], ids=["process", "process-group"])
async def test_up_stops_cleanly_on_sigterm_and_a_restart_finishes_the_rest(
    tmp_path: Path, spawn, small_jpeg: bytes, group: bool
):
    (tmp_path / "pixpipe.toml").write_text(SHORT_RETRIES)
    data_dir = tmp_path / "data"
    args = ("up", "--data-dir", data_dir, "--port", free_port(), "--workers", "1")
    keys = [f"queue/{n:02d}.jpg" for n in range(12)]

    up = spawn(*args)
    url, api_key = await _up_started(up)
    auth = {"Authorization": f"Bearer {api_key}"}
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        for key in keys:
            response = await http.post(
                "/v1/images", params={"key": key}, content=small_jpeg, headers=auth
            )
            assert response.status_code == 201, response.text
    await eventually(lambda: variant_files(data_dir / "variants", keys[0]) == set(SIX))
    code, seconds = await up.terminate(group=group)
    assert code == 0, up.output
    assert seconds < 10, f"took {seconds:.1f} s to stop"
    unfinished = [k for k in keys if variant_files(data_dir / "variants", k) != set(SIX)]
    assert unfinished, "everything finished before the stop: nothing left to resume"

    again = spawn(*args)
    await _up_started(again)
    async with bus_of(data_dir) as (js, states):
        docs = await wait_all(states, keys, timeout=90)
        assert all(variant_files(data_dir / "variants", k) == set(SIX) for k in keys)
        assert {d.state for d in docs.values()} == {"done"}
        await asyncio.sleep(1)
        processed = [key for key, _ in await processed_events(js)]
        assert sorted(processed) == keys, "exactly one image.processed per key"
    code, _ = await again.terminate()
    assert code == 0, again.output


async def test_up_restarts_its_embedded_nats_server_after_a_crash(
    tmp_path: Path, spawn, small_jpeg: bytes
):
    (tmp_path / "pixpipe.toml").write_text(SHORT_RETRIES)
    data_dir = tmp_path / "data"
    up = spawn("up", "--data-dir", data_dir, "--port", free_port(), "--workers", "1")
    url, api_key = await _up_started(up)
    auth = {"Authorization": f"Bearer {api_key}"}
    keys = ["before/the crash.jpg", "after/the crash.jpg"]
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:

        async def upload(key: str) -> None:
            """As a client does: retry what the service refuses while it recovers."""
            deadline = time.monotonic() + 30
            while (
                await http.post("/v1/images", params={"key": key}, content=small_jpeg, headers=auth)
            ).status_code != 201:
                assert time.monotonic() < deadline, f"{key} never accepted"
                await asyncio.sleep(0.5)

        await upload(keys[0])
        await eventually(lambda: variant_files(data_dir / "variants", keys[0]) == set(SIX))
        (nats_server,) = children_of(up.pid, b"nats-server")
        os.kill(nats_server, signal.SIGKILL)
        await eventually(lambda: children_of(up.pid, b"nats-server") not in ([], [nats_server]))
        await upload(keys[1])
        async with bus_of(data_dir) as (_, states):
            await wait_all(states, keys, timeout=60)
        assert variant_files(data_dir / "variants", keys[1]) == set(SIX)
    code, _ = await up.terminate()
    assert code == 0, up.output


async def test_up_stopped_mid_render_exits_promptly_and_the_image_is_not_lost(
    tmp_path: Path, spawn, big_png: bytes
):
    """A stop lets the render in hand finish (a few seconds at most) rather than waste it;
    whatever is left unacknowledged, the restart picks up."""
    (tmp_path / "pixpipe.toml").write_text(SHORT_RETRIES)
    data_dir = tmp_path / "data"
    args = ("up", "--data-dir", data_dir, "--port", free_port(), "--workers", "1")
    up = spawn(*args)
    url, api_key = await _up_started(up)
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        response = await http.post(
            "/v1/images", params={"key": BIG}, content=big_png,
            headers={"Authorization": f"Bearer {api_key}"},
        )  # fmt: skip
        assert response.status_code == 201, response.text
    await eventually(lambda: len(up.children()) == 1)
    await busy(up.children()[0])
    code, seconds = await up.terminate()
    assert code == 0, up.output
    assert seconds < 10, f"took {seconds:.1f} s to stop"

    again = spawn(*args)
    await _up_started(again)
    async with bus_of(data_dir) as (js, states):
        await wait_all(states, [BIG], timeout=60)
        assert variant_files(data_dir / "variants", BIG) == set(SIX)
        await asyncio.sleep(1)
        assert [key for key, _ in await processed_events(js)] == [BIG]
    code, _ = await again.terminate()
    assert code == 0, again.output


# --- 5. pixpipe up, as a user runs it -------------------------------------------------------


async def test_up_serves_an_upload_end_to_end_and_stops_on_sigterm(
    tmp_path: Path, spawn, small_jpeg: bytes
):
    data_dir = tmp_path / "data"
    up = spawn("up", "--data-dir", data_dir, "--port", free_port(), "--workers", "1")
    url, api_key = await _up_started(up)
    key = "users/42/IMG 0001.jpg"
    auth = {"Authorization": f"Bearer {api_key}"}
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        # What the printed curl line does: the raw photo as the body.
        response = await http.post(
            "/v1/images", params={"key": key}, content=small_jpeg, headers=auth
        )
        assert response.status_code == 201, response.text

        async def done() -> bool:
            return (await http.get(f"/v1/images/{key}", headers=auth)).json()["state"] == "done"

        await eventually(done, timeout=60)
        body = (await http.get(f"/v1/images/{key}", headers=auth)).json()
        assert set(body["variants"]) == set(SIX)
        assert body["variants"]["m"]["width"] == 800
        variant = await http.get("/images/m/users/42/IMG 0001.jpg")
        assert variant.status_code == 200 and images.decoded(variant.content).width == 800
    assert variant_files(data_dir / "variants", key) == set(SIX)
    backup = data_dir / "backup" / key
    await eventually(lambda: backup.is_file() and backup.read_bytes() == small_jpeg)

    code, seconds = await up.terminate()
    assert code == 0, up.output
    assert seconds < 10, f"took {seconds:.1f} s to stop"
    assert not (data_dir / bus.URL_FILE).exists(), "the embedded nats-server was left running"
    # The worker's lines about the image carry its key as a field of the line.
    assert f"INFO [{key}] done {key} in" in up.output, up.output
