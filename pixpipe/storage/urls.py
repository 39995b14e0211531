"""Store URLs → obstore stores: ``file://`` (absolute, or ``file://./dir`` relative to the
working directory), ``s3://bucket/prefix`` (AWS S3, MinIO, R2, Ceph: endpoint and credentials
from the ``AWS_*`` variables), ``gs://``, ``az://``, ``memory://``. obstore already speaks
them all, so there are no per-backend classes: only the URL, the client options and the retry.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from obstore.exceptions import BaseError as ObstoreError
from obstore.store import LocalStore, MemoryStore, from_url

from .stores import STORE_NAMES, Store

if TYPE_CHECKING:
    from collections.abc import Iterator

    from obstore.store import ClientConfig, RetryConfig

    from ..config import Settings


class BadStoreUrl(ValueError):
    """A store URL that cannot be opened; the message says what to fix."""


_MEMORY: dict[str, MemoryStore] = {}

# Fail over in seconds, not minutes: JetStream redelivery is the real retry loop.
DEFAULT_CLIENT_OPTIONS: ClientConfig = {
    "connect_timeout": timedelta(seconds=5),
    "timeout": timedelta(seconds=120),
}
DEFAULT_RETRY: RetryConfig = {
    "max_retries": 3,
    "retry_timeout": timedelta(seconds=30),
    "backoff": {"init_backoff": timedelta(milliseconds=100), "max_backoff": timedelta(seconds=5)},
}


def _local(url: str) -> LocalStore:
    rest = url.removeprefix("file://")
    path = Path(rest).expanduser()
    if not path.is_absolute():
        path = Path.cwd() / path  # file://./dir is relative to the working directory
    path = path.resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadStoreUrl(f"store {url}: cannot create folder {path}: {exc}") from exc
    return LocalStore(path, automatic_cleanup=True)


def _s3_options(endpoint: str | None) -> dict[str, Any]:
    """S3 settings from the usual ``AWS_*`` variables, read now (not at import)."""
    env = os.environ
    config: dict[str, Any] = {}
    for var, name in (
        ("AWS_ACCESS_KEY_ID", "access_key_id"),
        ("AWS_SECRET_ACCESS_KEY", "secret_access_key"),
        ("AWS_SESSION_TOKEN", "session_token"),
    ):
        if env.get(var):
            config[name] = env[var]
    if region := env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"):
        config["region"] = region
    if endpoint:
        config["endpoint"] = endpoint
    return config


def open_store(
    url: str,
    *,
    client_options: ClientConfig | None = None,
    retry_config: RetryConfig | None = None,
) -> Store:
    """Open a store URL: ``file:///abs``, ``file://./rel``, ``s3://bucket/prefix``,
    ``gs://bucket/prefix``, ``az://container/prefix``, ``memory://name``.

    ``memory://name`` is one store per name and process, so the API and a worker in one
    process share it. S3 endpoint and credentials come from ``AWS_ENDPOINT_URL``,
    ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` and ``AWS_REGION``.
    """
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "file":
        return Store(url, _local(url))
    if scheme == "memory":
        return Store(url, _MEMORY.setdefault(url, MemoryStore()))
    if scheme not in ("s3", "s3a", "gs", "az", "azure", "abfs", "abfss"):
        raise BadStoreUrl(
            f"store URL must start with file://, s3://, gs://, az:// or memory:// (got {url!r})"
        )
    options: dict[str, Any] = {**DEFAULT_CLIENT_OPTIONS, **(client_options or {})}
    config: dict[str, Any] = {}
    if scheme.startswith("s3"):
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        config = _s3_options(endpoint)
        if endpoint and endpoint.startswith("http://"):
            options.setdefault("allow_http", True)  # MinIO / moto / Ceph on plain HTTP
    try:
        inner = from_url(  # type: ignore[call-overload]
            url,
            config=config or None,
            client_options=options,
            retry_config=retry_config or DEFAULT_RETRY,
        )
    except (ObstoreError, ValueError) as exc:
        raise BadStoreUrl(f"store {url}: {str(exc).splitlines()[0]}") from exc
    return Store(url, inner)


@dataclass(frozen=True, slots=True)
class Stores:
    """The five stores of a deployment."""

    originals: Store
    variants: Store
    backup: Store
    quarantine: Store
    cache: Store

    def __iter__(self) -> Iterator[Store]:
        return iter((self.originals, self.variants, self.backup, self.quarantine, self.cache))


def open_stores(settings: Settings, **options: Any) -> Stores:
    """Open all five stores named in the settings (local folders under ``data_dir`` by default)."""
    return Stores(**{name: open_store(settings.store_url(name), **options) for name in STORE_NAMES})


__all__ = [
    "DEFAULT_CLIENT_OPTIONS", "DEFAULT_RETRY", "BadStoreUrl", "Stores", "open_store", "open_stores",
]  # fmt: skip
