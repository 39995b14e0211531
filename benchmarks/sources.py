"""The ways an original reaches ``pixpipe up`` in the pipeline benchmark (PRODUCT.md §7: the
API, files dropped into a local originals folder, S3 bucket notifications).

A source is opened for one run of ``pixpipe up`` and says what that run needs (extra
``pixpipe.toml`` lines, extra environment) and how the client puts one original in; the
benchmark (``pipeline.py``) keeps eight puts in flight and waits for every ``done``.

- ``http``: ``POST /v1/images`` with the file as the body.
- ``folder``: the file copied to a hidden temporary name in ``{data_dir}/originals`` (the
  originals store's default, ``config.Settings.store_url``), then renamed into place, as a
  user's ``mv`` does: the watcher ignores dot-files, so it only ever sees whole files.
- ``s3``: originals in a bucket on moto's stand-alone S3 server, a thread of the benchmark's
  own process (so never counted with ``pixpipe up``'s processes; variants, backup, quarantine
  and cache stay local, under the data dir); the client PUTs the object with boto3, then posts
  its AWS-shaped notification (key URL-encoded, ``+`` for spaces) to ``POST /v1/events/s3``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote_plus

import httpx

# (client of pixpipe up's API, its data dir, the original's key, the file) → the original is in
Put = Callable[[httpx.AsyncClient, Path, str, Path], Awaitable[None]]

BUCKET = "pixpipe-bench"
PREFIX = "originals"
AWS_ENV = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
           "AWS_REGION": "us-east-1"}  # fmt: skip


@dataclass(frozen=True)
class Source:
    """One way in: what ``pixpipe up`` needs to take it, and how one original is put in."""

    name: str
    put: Put
    config: str = ""  # extra pixpipe.toml
    env: dict[str, str] = field(default_factory=dict)  # extra environment of pixpipe up


async def _upload(client: httpx.AsyncClient, data_dir: Path, key: str, path: Path) -> None:
    data = await asyncio.to_thread(path.read_bytes)
    (await client.post("/v1/images", params={"key": key}, content=data)).raise_for_status()


def _drop(data_dir: Path, key: str, path: Path) -> None:
    target = data_dir / "originals" / key
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(f".{target.name}.part")
    shutil.copyfile(path, part)
    os.rename(part, target)


async def _dropped(client: httpx.AsyncClient, data_dir: Path, key: str, path: Path) -> None:
    await asyncio.to_thread(_drop, data_dir, key, path)


def _notification(key: str, size: int, etag: str) -> dict[str, object]:
    """The S3 event an ``s3:ObjectCreated:Put`` notification of ``key`` sends."""
    return {"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": AWS_ENV["AWS_REGION"],
        "eventName": "ObjectCreated:Put",
        "s3": {"s3SchemaVersion": "1.0",
               "bucket": {"name": BUCKET, "arn": f"arn:aws:s3:::{BUCKET}"},
               "object": {"key": quote_plus(key, safe="/"), "size": size, "eTag": etag}},
    }]}  # fmt: skip


@contextlib.contextmanager
def _s3() -> Iterator[Source]:
    import boto3
    from moto.server import ThreadedMotoServer

    # moto keeps objects under this size in memory: spill them to files (1,000 photos ≈ 1.2 GB)
    os.environ.setdefault("MOTO_S3_DEFAULT_KEY_BUFFER_SIZE", str(256 * 1024))
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name=AWS_ENV["AWS_REGION"],
                          aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"])  # fmt: skip
        s3.create_bucket(Bucket=BUCKET)

        def store(key: str, path: Path) -> dict[str, object]:
            data = path.read_bytes()
            etag = s3.put_object(Bucket=BUCKET, Key=key, Body=data)["ETag"].strip('"')
            return _notification(key, len(data), etag)

        async def put(client: httpx.AsyncClient, data_dir: Path, key: str, path: Path) -> None:
            event = await asyncio.to_thread(store, f"{PREFIX}/{key}", path)
            (await client.post("/v1/events/s3", json=event)).raise_for_status()

        config = f'[stores]\noriginals = "s3://{BUCKET}/{PREFIX}"\n'
        yield Source("s3", put, config, {**AWS_ENV, "AWS_ENDPOINT_URL": endpoint})
    finally:
        server.stop()


@contextlib.contextmanager
def _plain(source: Source) -> Iterator[Source]:
    yield source


OPEN: dict[str, Callable[[], contextlib.AbstractContextManager[Source]]] = {
    "http": lambda: _plain(Source("http", _upload)),
    "folder": lambda: _plain(Source("folder", _dropped)),
    "s3": _s3,
}

# How each puts an original in, for the RESULTS table.
HOW = {
    "http": "`POST /v1/images`",
    "folder": "files renamed into the originals folder",
    "s3": "S3 PUTs (moto) + `POST /v1/events/s3`",
}
