"""The job core (``pixpipe.jobs``), the same on every runtime: one contract suite run over the
pipeline's ports (image state in a real JetStream KV bucket) and the Lambda's (state records
in the variants store), as the stores' suite runs over every store; the retry policy as a
table; and the direct resize giving the same key and bytes over HTTP, the CLI and Lambda."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pixpipe.aws import handler
from pixpipe.aws.runtime import RecordStates
from pixpipe.cli import app
from pixpipe.config import RetryModel
from pixpipe.errors import Kind, PixpipeError
from pixpipe.events import ImageFailed, ImageProcessed
from pixpipe.imaging import render
from pixpipe.jobs import variants
from pixpipe.jobs.retry import Action, backoff, decide
from pixpipe.jobs.state import ImageState
from pixpipe.limits import Limits
from pixpipe.pipeline.states import KvStates
from pixpipe.recipe import Recipe
from pixpipe.storage import Store
from pixpipe.storage.stores import Download

from . import images
from .job_ports import Ports
from .job_ports import upload as _upload
from .pipeline import make_settings, running
from .test_aws import CONTEXT as LAMBDA

RECIPE = Recipe.parse(["s=200x200", "t=64x64,cover"])
LIMITS = Limits()

# ---- the retry policy, as a table ----------------------------------------------------------

PERMANENT = [Kind.CORRUPT, Kind.UNSUPPORTED, Kind.TOO_LARGE, Kind.MISSING]


@pytest.mark.parametrize(
    ("kind", "delivered", "attempts", "action"),
    [
        (None, 1, 3, Action.ACK),
        (None, 3, 3, Action.ACK),
        *[(kind, n, 3, Action.GIVE_UP) for kind in PERMANENT for n in (1, 2, 3)],
        (Kind.TRANSIENT, 1, 3, Action.RETRY),
        (Kind.TRANSIENT, 2, 3, Action.RETRY),
        (Kind.TRANSIENT, 3, 3, Action.GIVE_UP),
        (Kind.TRANSIENT, 4, 3, Action.GIVE_UP),  # a delivery past the limit: record it
        (Kind.TRANSIENT, 1, 1, Action.GIVE_UP),
        (Kind.TRANSIENT, 50, -1, Action.RETRY),  # patient consumers never give up
        (Kind.CORRUPT, 1, -1, Action.GIVE_UP),  # … except on what can never succeed
    ],
)
def test_retry_policy(kind: Kind | None, delivered: int, attempts: int, action: Action) -> None:
    error = PixpipeError(kind, "x") if kind else None
    assert decide(error, delivered, attempts) is action


def test_backoff_follows_the_configured_steps() -> None:
    retry = RetryModel(attempts=5, backoff_s=[2, 10])
    assert [backoff(retry, n) for n in (1, 2, 3, 4)] == [2, 10, 10, 10]


# ---- one contract suite over both runtimes' ports -------------------------------------------


async def test_an_original_becomes_its_variants_a_done_state_and_one_event(ports: Ports) -> None:
    event = await _upload(ports, "users/42/IMG 0001.jpg", images.jpeg(images.photo(640, 400)))
    outcome = await variants.render_variants(ports.ctx, event, 1, delivery="7")
    assert outcome.state == "done"
    state = await ports.ctx.states.get(event.key)
    assert state is not None and state.state == "done" and state.etag == event.etag
    assert {n: (v.width, v.height) for n, v in state.variants.items()} == {
        "s": (200, 125), "t": (64, 64)
    }  # fmt: skip
    assert await ports.ctx.stores.variants.exists("s/users/42/IMG 0001.jpg")
    assert [type(e) for e in ports.events] == [ImageProcessed]
    assert ports.events[0].etag == event.etag  # type: ignore[attr-defined]


async def test_a_repeated_delivery_is_skipped_and_the_same_one_announces_again(
    ports: Ports,
) -> None:
    event = await _upload(ports, "a.jpg", images.jpeg(images.photo(300, 200)))
    await variants.render_variants(ports.ctx, event, 1, delivery="7")
    made = await ports.ctx.stores.variants.head("s/a.jpg")
    other = await variants.render_variants(ports.ctx, event, 1, delivery="8")
    assert other.state == "skipped" and len(ports.events) == 1
    again = await variants.render_variants(ports.ctx, event, 2, delivery="7")
    assert again.state == "skipped"
    assert [type(e) for e in ports.events] == [ImageProcessed, ImageProcessed]
    assert await ports.ctx.stores.variants.head("s/a.jpg") == made  # never rendered again


async def test_a_state_remembered_stale_costs_a_render_and_nothing_else(ports: Ports) -> None:
    """The job core's first look may be this process's own last view of the state
    (``StateStore.recent``, saving a read). When another process has finished the image
    since, the look is stale: the image is rendered again (the skip is missed) and ends
    ``done`` for its version, every write a compare-and-set on the state as it was."""
    states = ports.ctx.states
    event = await _upload(ports, "stale.jpg", images.jpeg(images.photo(300, 200)))
    pending = ImageState(key="stale.jpg", state="pending", etag=event.etag)
    await states.put(pending)  # remembered here: pending
    assert await states.recent("stale.jpg") == pending
    remembers = isinstance(states, KvStates)  # the Lambda's records remember nothing
    elsewhere = KvStates(states.kv) if remembers else RecordStates(states.store)
    other = dataclasses.replace(ports.ctx, states=elsewhere)  # another process
    assert (await variants.render_variants(other, event, 1, delivery="1")).state == "done"
    assert (await states.recent("stale.jpg")).state == ("pending" if remembers else "done")
    outcome = await variants.render_variants(ports.ctx, event, 2, delivery="2")
    assert outcome.state == ("done" if remembers else "skipped")
    fresh = await elsewhere.get("stale.jpg")
    assert fresh is not None and (fresh.state, fresh.etag, fresh.attempts) == (
        "done", event.etag, 2 if remembers else 1
    )  # fmt: skip
    assert await states.recent("stale.jpg") == fresh  # its write taught it the state as it is


async def test_a_final_state_reopened_elsewhere_is_read_again(ports: Ports) -> None:
    """A failure this process recorded, retried from another process (``failed`` back to
    ``pending``), is rendered: the first look never trusts a remembered final state (seen in
    the fault test of the image that kills every worker, whose retry was skipped)."""
    states = ports.ctx.states
    event = await _upload(ports, "reopened.jpg", images.jpeg(images.photo(300, 200)))
    error = PixpipeError(Kind.TRANSIENT, "the render process died")
    assert (await variants.fail(ports.ctx, event.key, error, 2, etag=event.etag)).state == "failed"
    elsewhere = KvStates(states.kv) if isinstance(states, KvStates) else RecordStates(states.store)
    await elsewhere.change(event.key, lambda s: s.but(state="pending"))
    outcome = await variants.render_variants(ports.ctx, event, 1, delivery="retry")
    assert outcome.state == "done"
    assert (await elsewhere.get(event.key)).state == "done"


async def test_a_new_upload_of_the_key_is_rendered_again(ports: Ports) -> None:
    first = await _upload(ports, "b.jpg", images.jpeg(images.photo(300, 200)))
    await variants.render_variants(ports.ctx, first, 1)
    second = await _upload(ports, "b.jpg", images.jpeg(images.photo(300, 100, seed=2)))
    assert (await variants.render_variants(ports.ctx, second, 1)).state == "done"
    state = await ports.ctx.states.get("b.jpg")
    assert state is not None and state.etag == second.etag
    assert (state.variants["s"].width, state.variants["s"].height) == (200, 67)


async def test_a_permanent_failure_quarantines_and_a_redelivery_finds_it_done_with(
    ports: Ports,
) -> None:
    event = await _upload(ports, "bad.jpg", images.truncated(images.jpeg(images.photo())))
    with pytest.raises(PixpipeError) as raised:
        await variants.render_variants(ports.ctx, event, 1)
    assert raised.value.kind is Kind.CORRUPT
    assert (await variants.fail(ports.ctx, "bad.jpg", raised.value, 1)).state == "failed"
    stores = ports.ctx.stores
    assert not await stores.originals.exists("bad.jpg")
    assert await stores.quarantine.exists("bad.jpg")
    record = json.loads(await stores.quarantine.get("_pixpipe/errors/bad.jpg.json"))
    assert (record["kind"], record["attempts"]) == ("corrupt", 1)
    state = await ports.ctx.states.get("bad.jpg")
    assert state is not None and state.state == "failed" and state.quarantined
    assert state.error is not None and state.error.kind == "corrupt"
    assert [type(e) for e in ports.events] == [ImageFailed]
    # The same notification again: the state says it failed for this very version.
    assert (await variants.render_variants(ports.ctx, event, 1)).state == "skipped"


async def test_a_transient_failure_keeps_the_original(ports: Ports) -> None:
    event = await _upload(ports, "t.jpg", images.jpeg(images.photo(200, 200)))
    error = PixpipeError(Kind.TRANSIENT, "the store timed out")
    await variants.fail(ports.ctx, "t.jpg", error, 3)
    assert await ports.ctx.stores.originals.exists("t.jpg")
    state = await ports.ctx.states.get("t.jpg")
    assert state is not None and state.state == "failed" and not state.quarantined
    assert event.etag  # the original stays, so a retry can finish it


# ---- one direct resize on every runtime -----------------------------------------------------


async def test_direct_resize_same_key_and_bytes_over_http_cli_and_lambda(
    tmp_path: Path, nats_server_private, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, original = "users/42/IMG 0001.jpg", images.jpeg(images.photo(900, 600))
    results: dict[str, tuple[str, bytes]] = {}
    for runtime in ("http", "cli", "lambda"):
        data_dir = tmp_path / runtime
        (data_dir / "originals" / "users" / "42").mkdir(parents=True)
        (data_dir / "originals" / key).write_bytes(original)
        if runtime == "http":
            async with running(make_settings(data_dir, nats_server_private.url)) as pipe:
                response = await pipe.http.post(
                    "/v1/invoke", json={"key": key, "maxDimension": 300},
                    headers={"Authorization": "Bearer test-key"},
                )  # fmt: skip
                assert response.status_code == 200, response.text
                result_key = response.json()["resultKey"]
                # A reader asking for the Lambda's old key (max-{N}/…) gets the same result.
                legacy = await pipe.http.get("/images/max-300/users/42/IMG 0001.jpg")
                current = await pipe.http.get(f"/images/{result_key}")
                assert legacy.status_code == 200 and legacy.content == current.content
        elif runtime == "cli":
            args = ["invoke", key, "--max-dimension", "300", "--data-dir", str(data_dir)]
            run = await asyncio.to_thread(CliRunner().invoke, app, args)
            assert run.exit_code == 0, run.output
            result_key = json.loads(run.output)["resultKey"]
        else:
            monkeypatch.setenv("PIXPIPE_DATA_DIR", str(data_dir))
            monkeypatch.chdir(tmp_path)
            payload = {"key": key, "maxDimension": 300}
            result_key = (await asyncio.to_thread(handler, payload, LAMBDA))["resultKey"]
        results[runtime] = (result_key, (data_dir / "variants" / result_key).read_bytes())
    assert {k for k, _ in results.values()} == {"max300/users/42/IMG 0001.jpg"}
    assert len({data for _, data in results.values()}) == 1, "the three runtimes differ"
    assert images.decoded(results["http"][1]).width == 300


# ---- limits checked before the bytes, and a slow render ---------------------------------------


def _watched(ports: Ports, limits: Limits) -> tuple[variants.Context, list[str]]:
    """The context with these limits and an originals store that records every open and
    refuses every read of a body."""
    reads: list[str] = []

    async def refuse(key: str) -> AsyncIterator[bytes]:
        reads.append(f"read {key}")
        raise AssertionError(f"{key} was read")
        yield b""

    class Watched(Store):
        async def get(self, key: str) -> bytes:
            return b"".join([c async for c in refuse(key)])

        async def get_range(self, key: str, start: int, end: int) -> bytes:
            return await self.get(key)

        async def open(self, key: str, **options: Any) -> Download:
            reads.append(f"open {key}")
            download = await Store.open(self, key, **options)
            return dataclasses.replace(download, chunks=refuse(key))

    plain = ports.ctx.stores.originals
    stores = dataclasses.replace(ports.ctx.stores, originals=Watched(plain.url, plain.inner))
    return dataclasses.replace(ports.ctx, stores=stores, limits=limits), reads


async def test_an_original_over_the_byte_limit_is_refused_before_a_byte_is_read(
    ports: Ports,
) -> None:
    data = images.jpeg(images.photo(300, 200))
    event = await _upload(ports, "huge.jpg", data)
    ctx, reads = _watched(ports, Limits(max_input_bytes=len(data) - 1))
    with pytest.raises(PixpipeError) as raised:
        await variants.render_variants(ctx, event, 1)
    assert raised.value.kind is Kind.TOO_LARGE and f"{len(data)} bytes" in raised.value.message
    assert reads == []  # refused from the announced size: not even opened
    # The failure is recorded as usual: the original moves to quarantine.
    assert (await variants.fail(ctx, "huge.jpg", raised.value, 1)).state == "failed"
    assert await ctx.stores.quarantine.exists("huge.jpg")


async def test_a_size_announced_wrong_is_caught_from_the_stores_own_before_the_body(
    ports: Ports,
) -> None:
    data = images.jpeg(images.photo(300, 200))
    event = (await _upload(ports, "lying.jpg", data)).model_copy(update={"size": 10})
    ctx, reads = _watched(ports, Limits(max_input_bytes=len(data) - 1))
    with pytest.raises(PixpipeError) as raised:
        await variants.render_variants(ctx, event, 1)
    assert raised.value.kind is Kind.TOO_LARGE
    assert reads == ["open lying.jpg"]  # its size seen, its body never read


async def test_a_render_out_of_time_is_retried_once_then_too_large(ports: Ports) -> None:
    """A time-out may be a busy machine: the first is transient (original kept, retried);
    only a second one makes the image ``too_large``."""
    data = images.jpeg(images.photo(4000, 3000))
    event = await _upload(ports, "slow.jpg", data)
    tight = Limits(max_seconds=0.002)

    async def render_tight(data: bytes, recipe: Recipe) -> object:
        return render(data, recipe, tight)

    ctx = dataclasses.replace(ports.ctx, limits=tight, render=render_tight)
    with pytest.raises(PixpipeError) as first:
        await variants.render_variants(ctx, event, 1)
    assert first.value.kind is Kind.TRANSIENT and "longer than 0.002 s" in first.value.message
    assert decide(first.value, 1, 3) is Action.RETRY
    assert await ctx.stores.originals.exists("slow.jpg")
    with pytest.raises(PixpipeError) as second:
        await variants.render_variants(ctx, event, 2)
    assert second.value.kind is Kind.TOO_LARGE and "longer than 0.002 s" in second.value.message
    assert decide(second.value, 2, 3) is Action.GIVE_UP
    # With time enough, the very same image renders.
    assert (await variants.render_variants(ports.ctx, event, 3)).state == "done"
