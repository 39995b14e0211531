"""Uploads straight into a cloud store, bound to one key, one type and one exact length, so
the store itself refuses anything else (a 5 GB body on a grant for 2 MB never lands).

- S3 (and MinIO, R2, Ceph): a presigned **POST** whose policy holds ``content-length-range``
  and the ``Content-Type`` (botocore signs it; a presigned PUT cannot bind a length on S3);
- GCS and Azure: the store's own signed PUT (obstore), the type sent as a header.

Local and memory stores have no URL of their own: the API serves those uploads itself
(``http/uploads.py``, with a single-use token).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from .stores import Store


@dataclass(frozen=True, slots=True)
class Grant:
    """How a client sends one upload: ``method`` to ``url`` with these headers, and for a
    POST these form fields before the ``file`` field."""

    url: str
    method: str
    headers: dict[str, str]
    fields: dict[str, str] = field(default_factory=dict)


def signable(store: Store) -> bool:
    """Whether the store hands out upload URLs of its own (S3, GCS, Azure)."""
    from obstore.store import AzureStore, GCSStore, S3Store

    return isinstance(store.inner, S3Store | GCSStore | AzureStore)


@functools.lru_cache(maxsize=8)
def _s3_client(endpoint: str | None, region: str | None) -> Any:
    import botocore.session
    from botocore.config import Config

    # Path-style on a custom endpoint (MinIO, moto, Ceph), as the stores use it.
    config = Config(signature_version="s3v4", s3={"addressing_style": "path"} if endpoint else {})
    session = botocore.session.get_session()
    return session.create_client("s3", endpoint_url=endpoint, region_name=region, config=config)


def _s3_post(store: Store, key: str, content_type: str, length: int, expires_in: int) -> Grant:
    parts = urlsplit(store.url)
    prefix = parts.path.strip("/")
    env = os.environ
    client = _s3_client(
        env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL"),
        env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"),
    )
    post = client.generate_presigned_post(
        Bucket=parts.netloc, Key=f"{prefix}/{key}" if prefix else key,
        Fields={"Content-Type": content_type},
        Conditions=[{"Content-Type": content_type}, ["content-length-range", length, length]],
        ExpiresIn=expires_in,
    )  # fmt: skip
    return Grant(post["url"], "POST", {}, {k: str(v) for k, v in post["fields"].items()})


async def presign_upload(
    store: Store, key: str, content_type: str, length: int, expires_in: int
) -> Grant:
    """A grant to upload ``length`` bytes of ``content_type`` to ``key`` (a ``signable``
    store), valid ``expires_in`` seconds."""
    from obstore.store import S3Store

    if isinstance(store.inner, S3Store):
        return _s3_post(store, key, content_type, length, expires_in)
    import obstore

    signable_store: Any = store.inner
    url = await obstore.sign_async(signable_store, "PUT", key, timedelta(seconds=expires_in))
    return Grant(url, "PUT", {"Content-Type": content_type})


__all__ = ["Grant", "presign_upload", "signable"]
