"""Real services for tests, as a pytest plugin: a nats-server from the wheel, moto's S3 server,
and a ``store_url`` fixture that runs a test once per store scheme we claim.

Fixtures:
- ``nats_server`` (session): an ``EmbeddedServer`` on a free loopback port.
- ``nats_server_private`` (function): a server of its own, to kill/restart in fault tests.
- ``js`` (function): ``(nc, js)`` connected to ``nats_server`` with every stream and KV bucket
  deleted first, so each test starts from an empty JetStream.
- ``moto_server`` (session): ``MotoS3`` (endpoint, bucket) of a stand-alone moto server.
- ``aws_env`` (function): the ``AWS_*`` variables pointing at ``moto_server``.
- ``store_url`` (function, parametrized file / memory / s3): a fresh, empty store URL.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pixpipe.bus import EmbeddedServer, connect

BUCKET = "pixpipe-test"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """One real nats-server (JetStream on) per test session / xdist worker."""
    with EmbeddedServer(tmp_path_factory.mktemp("nats")) as server:
        yield server


@pytest.fixture
def nats_server_private(tmp_path: Path) -> Iterator[EmbeddedServer]:
    """A nats-server of the test's own, free to ``kill()`` and ``restart()``."""
    server = EmbeddedServer(tmp_path / "nats").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def js(nats_server: EmbeddedServer) -> AsyncIterator[tuple[Any, Any]]:
    """``(nc, js)`` on the shared server, with JetStream emptied for this test."""
    nc = await connect(nats_server.url, max_reconnect_attempts=3)
    jsc = nc.jetstream()
    for info in await jsc.streams_info():
        await jsc.delete_stream(info.config.name)
    try:
        yield nc, jsc
    finally:
        await nc.close()


@dataclass(frozen=True)
class MotoS3:
    """A running moto S3 server and the bucket made for tests."""

    endpoint: str
    bucket: str = BUCKET

    def client(self) -> Any:
        """A boto3 S3 client, to check what a store wrote from the outside."""
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, **_boto_credentials())


def _boto_credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": AWS_ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        "region_name": AWS_ENV["AWS_REGION"],
    }


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoS3]:
    """moto's stand-alone S3 server on a free loopback port, with the test bucket."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    moto = MotoS3(f"http://{host}:{port}")
    moto.client().create_bucket(Bucket=moto.bucket)
    try:
        yield moto
    finally:
        server.stop()


@pytest.fixture
def aws_env(moto_server: MotoS3, monkeypatch: pytest.MonkeyPatch) -> MotoS3:
    """Point the ``AWS_*`` variables at the moto server for this test."""
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint)
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    return moto_server


@pytest.fixture(params=["file", "memory", "s3"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store URL of each scheme in turn."""
    unique = uuid.uuid4().hex[:12]
    if request.param == "file":
        return f"file://{tmp_path / 'store'}"
    if request.param == "memory":
        return f"memory://test-{unique}"
    request.getfixturevalue("aws_env")
    return f"s3://{BUCKET}/test-{unique}"
