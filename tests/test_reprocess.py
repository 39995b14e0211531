"""Backfills on a real nats-server: a new variant for every original under a prefix, the other
variant files untouched; paged listing; an interrupted run resumed finishes exactly the rest;
the same from ``POST /v1/reprocess`` and ``pixpipe reprocess``."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pixpipe.cli import app
from pixpipe.pipeline import backfill as reprocess
from pixpipe.storage import Store

from . import images
from .pipeline import API_KEY, eventually, make_settings, running

AUTH = {"Authorization": f"Bearer {API_KEY}"}
SMALL = [{"name": "s", "width": 48, "height": 48}, {"name": "t", "width": 24, "height": 24,
         "fit": "cover"}]  # fmt: skip
NEW = {"name": "w", "width": 20, "height": 20, "fit": "cover", "format": "webp"}


def _files(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``root``: its bytes and modification time (ns)."""
    if not root.is_dir():
        return {}
    return {
        p.relative_to(root).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in root.rglob("*") if p.is_file()
    }  # fmt: skip


def _under(files: dict[str, Any], folder: str) -> set[str]:
    return {name for name in files if name.startswith(folder)}


async def test_new_variant_for_a_prefix_leaves_everything_else_alone(
    tmp_path: Path, nats_server_private
):
    settings = make_settings(tmp_path, nats_server_private.url, variants=SMALL)
    keys = [f"shop/{n}.jpg" for n in range(6)] + [f"blog/{n}.jpg" for n in range(3)]
    async with running(settings) as pipe:
        for n, key in enumerate(keys):
            data = images.jpeg(images.photo(64, 40, seed=n))
            assert (await pipe.upload(key, data)).status_code == 201
        for key in keys:
            assert (await pipe.wait(key)).state == "done"
    before = _files(tmp_path / "variants")
    assert len(before) == 2 * len(keys)

    # The recipe gains a variant; the workers restart with it; the backfill asks for it.
    settings = make_settings(tmp_path, nats_server_private.url, variants=[*SMALL, NEW])
    async with running(settings) as pipe:
        report = await reprocess.coordinate(pipe.rt, ["w"], "shop/", page_size=4)
        assert (report.listed, report.done, report.skipped, report.failed) == (6, 6, 0, 0)
        after = _files(tmp_path / "variants")
        assert _under(after, "w/") == {f"w/shop/{n}.webp" for n in range(6)}
        assert {k: v for k, v in after.items() if not k.startswith("w/")} == before
        state = await pipe.rt.states.get("shop/0.jpg")
        assert set(state.variants) == {"s", "t", "w"} and state.state == "done"
        assert images.decoded((tmp_path / "variants/w/shop/0.webp").read_bytes()).width == 20

        # Again: nothing to do (the variant is there for this original and this spec) …
        again = await reprocess.coordinate(pipe.rt, ["w"], "shop/", page_size=4)
        assert (again.listed, again.done, again.skipped, again.failed) == (6, 0, 6, 0)
        assert again.generation == report.generation + 1
        assert _files(tmp_path / "variants") == after
        # … but a file gone missing is made again.
        (tmp_path / "variants/w/shop/3.webp").unlink()
        mended = await reprocess.coordinate(pipe.rt, ["w"], "shop/", page_size=4)
        assert (mended.done, mended.skipped) == (1, 5)
        assert set(_files(tmp_path / "variants")) == set(after)

        # The API: the rest of the originals, in the background.
        started = await pipe.http.post(
            "/v1/reprocess", json={"variants": ["w"], "prefix": "blog/"}, headers=AUTH
        )
        assert started.status_code == 202, started.text
        run = started.json()["run"]

        async def finished() -> bool:
            body = (await pipe.http.get(f"/v1/reprocess/{run}")).json()
            return body["state"] == "done" and body["done"] == 3

        await eventually(finished)
        assert _under(_files(tmp_path / "variants"), "w/blog/") == {
            f"w/blog/{n}.webp" for n in range(3)
        }
        unknown = await pipe.http.post("/v1/reprocess", json={"variants": ["zz"]}, headers=AUTH)
        assert unknown.status_code == 400 and "zz" in unknown.json()["detail"]
        bad = await pipe.http.post("/v1/reprocess", json={"prefix": "a//b"}, headers=AUTH)
        assert bad.status_code == 400


class Interrupted(Exception):
    pass


async def test_interrupted_run_resumed_finishes_exactly_the_rest_paging_by_7(
    tmp_path: Path, nats_server_private, monkeypatch: pytest.MonkeyPatch
):
    # Originals in memory: no folder watcher announces them, so only the backfill renders.
    originals = f"memory://reprocess-{uuid.uuid4().hex[:8]}"
    settings = make_settings(
        tmp_path, nats_server_private.url, variants=[*SMALL, NEW],
        stores={"originals": originals},
    )  # fmt: skip
    pages: list[tuple[int, int]] = []  # (page_size asked, objects in the page)
    real_list = Store.list

    async def paged(self: Store, prefix: str = "", page_size: int = 1000) -> Any:
        async for page in real_list(self, prefix, page_size):
            pages.append((page_size, len(page)))
            yield page

    monkeypatch.setattr(Store, "list", paged)
    async with running(settings) as pipe:
        data = images.jpeg(images.photo(40, 30))
        await asyncio.gather(*(pipe.rt.stores.originals.put(f"bulk/{n:02d}.jpg", data)
                               for n in range(50)))  # fmt: skip
        await pipe.rt.stores.originals.put("other/x.jpg", data)

        def stop_after_three(report: reprocess.Report) -> None:
            if report.pages == 3:
                raise Interrupted  # as Ctrl-C would, right after the third page went out

        with pytest.raises(Interrupted):
            await reprocess.coordinate(
                pipe.rt, ["w"], "bulk/", page_size=7, on_page=stop_after_three
            )
        assert pages == [(7, 7)] * 3
        variants = tmp_path / "variants"
        await eventually(lambda: len(_under(_files(variants), "w/bulk/")) == 21)
        first = _files(variants)

        pages.clear()
        report = await reprocess.coordinate(pipe.rt, ["w"], "bulk/", page_size=7)
        assert pages == [(7, 7)] * 7 + [(7, 1)], "listed page by page, 7 at a time"
        assert (report.pages, report.listed, report.resumed) == (8, 50, 21)
        assert report.published == 5, "only the chunks of the unfinished pages went out"
        assert (report.done, report.skipped, report.failed) == (50, 0, 0)
        after = _files(variants)
        assert _under(after, "w/bulk/") == {f"w/bulk/{n:02d}.webp" for n in range(50)}
        assert {k: after[k] for k in first} == first, "a finished original was redone"
        assert set(after) - set(first) == {f"w/bulk/{n:02d}.webp" for n in range(21, 50)}
        assert not _under(after, "s/") and not _under(after, "w/other/")


async def test_cli_missing_only_and_bad_variant(tmp_path: Path, nats_server_private):
    settings = make_settings(tmp_path, nats_server_private.url, variants=SMALL)
    async with running(settings) as pipe:
        for n in range(3):
            await pipe.upload(f"cli/{n}.jpg", images.jpeg(images.photo(40, 30, seed=n)))
        for n in range(3):
            await pipe.wait(f"cli/{n}.jpg")
        (tmp_path / "variants" / "t" / "cli" / "1.jpg").unlink()  # one variant file lost
        before = _files(tmp_path / "variants")
        config = tmp_path / "pixpipe.toml"
        config.write_text(
            f'data_dir = "{tmp_path}"\n[bus]\nurl = "{nats_server_private.url}"\n'
            + "".join(
                "[[variants]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in spec.items())
                for spec in SMALL
            )
        )
        runner = CliRunner()
        args = ["reprocess", "--prefix", "cli/", "--missing-only", "--json", "--config", config]
        result = await asyncio.to_thread(runner.invoke, app, [str(a) for a in args])
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert (report["listed"], report["done"], report["skipped"]) == (3, 1, 2)
        assert report["variants"] == ["s", "t"] and report["state"] == "done"
        after = _files(tmp_path / "variants")
        assert set(after) - set(before) == {"t/cli/1.jpg"}
        assert {k: after[k] for k in before} == before, "an existing file was rewritten"

        bad = ["reprocess", "--variant", "nope", "--config", str(config)]
        result = await asyncio.to_thread(runner.invoke, app, bad)
        assert result.exit_code == 2 and "nope" in result.output
        bad = ["reprocess", "--prefix", "/etc", "--config", str(config)]
        result = await asyncio.to_thread(runner.invoke, app, bad)
        assert result.exit_code == 2 and "--prefix" in result.output
