"""The one place that knows pixpipe's HTTP API: each operation as an ``httpx.Request`` and
the function that reads its response. ``Client`` and ``AsyncClient`` only send them."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx

from . import _bodies
from .errors import PixpipeClientError
from .models import Batch, Grant, ImageState, Srcset, Uploaded

T = TypeVar("T")


@dataclass(frozen=True)
class Call(Generic[T]):
    """A request, and what its response means."""

    request: httpx.Request
    read: Callable[[httpx.Response], T]


def checked(response: httpx.Response) -> httpx.Response:
    """The response if 2xx, else its ``PixpipeClientError`` (the body must have been read)."""
    if not response.is_success:
        raise PixpipeClientError.of(response)
    return response


def _json(response: httpx.Response) -> Any:
    return checked(response).json()


def options_text(options: str | Mapping[str, object]) -> str:
    """``w:800/h:600`` as given, or from ``{"w": 800, "h": 600}``."""
    if isinstance(options, str):
        return options.strip("/")
    return "/".join(f"{name}:{value}" for name, value in options.items())


class Calls:
    """pixpipe's API at ``base_url``: the requests, with the API key where one is needed."""

    def __init__(self, base_url: str, api_key: str | None, signing_secret: str | None) -> None:
        self.base = base_url.rstrip("/")
        self.api_key, self.signing_secret = api_key, signing_secret

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def _get(self, path: str, read: Callable[[httpx.Response], T], **params: str) -> Call[T]:
        return Call(httpx.Request("GET", self.url(path), params=params or None), read)

    def _post(
        self, path: str, body: dict[str, Any], read: Callable[[httpx.Response], T]
    ) -> Call[T]:
        return Call(httpx.Request("POST", self.url(path), json=body, headers=self.auth()), read)

    def upload(self, key: str, source: _bodies.Source, content_type: str | None,
               batch: str | None, progress: _bodies.Progress | None) -> Call[Uploaded]:  # fmt: skip
        params = {"key": key} | ({"batch": batch} if batch is not None else {})
        headers = {**self.auth(), "Content-Type": source.content_type(content_type)}
        request = _bodies.raw("POST", self.url("/v1/images"), source, headers, progress, params)
        return Call(request, lambda r: Uploaded.from_json(_json(r)))

    def presign(self, key: str, content_type: str, length: int, expires_in: int) -> Call[Grant]:
        body = {"key": key, "content_type": content_type, "content_length": length,
                "expires_in": expires_in}  # fmt: skip
        return self._post("/v1/uploads", body, lambda r: Grant.from_json(_json(r)))

    def granted(self, grant: Grant, source: _bodies.Source, content_type: str,
                progress: _bodies.Progress | None) -> Call[Uploaded | None]:  # fmt: skip
        """The upload a grant allows; no API key goes with it (the grant is the permission,
        and the URL may be the store's)."""
        if grant.method == "POST":
            request = _bodies.form(grant.url, grant.fields, source, content_type, progress)
        else:
            request = _bodies.raw(grant.method, grant.url, source, grant.headers, progress)
        return Call(request, _granted)

    def state(self, key: str) -> Call[ImageState]:
        return self._get(f"/v1/images/{quote(key)}", lambda r: ImageState.from_json(_json(r)))

    def variant_urls(self, key: str) -> Call[dict[str, str]]:
        def read(response: httpx.Response) -> dict[str, str]:
            variants = ImageState.from_json(_json(response)).variants
            return {name: variant.url for name, variant in variants.items()}

        return self._get(f"/v1/images/{quote(key)}", read)

    def srcset(self, key: str, sizes: str, widths: list[int] | None,
               options: str | Mapping[str, object]) -> Call[Srcset]:  # fmt: skip
        params = {"sizes": sizes}
        if widths is not None:
            params["widths"] = ",".join(str(w) for w in widths)
        if text := options_text(options):
            params["options"] = text

        def read(response: httpx.Response) -> Srcset:
            body = _json(response)
            return Srcset(body["src"], body["srcset"], body["sizes"])

        return self._get(f"/v1/images/{quote(key)}/srcset", read, **params)

    def open_batch(self, batch_id: str, expected: int, deadline_s: float | None) -> Call[Batch]:
        body: dict[str, Any] = {"id": batch_id, "expected": expected}
        if deadline_s is not None:
            body["deadline_s"] = deadline_s
        return self._post("/v1/batches", body, lambda r: Batch.from_json(_json(r)))

    def batch(self, batch_id: str) -> Call[Batch]:
        path = f"/v1/batches/{quote(batch_id, safe='')}"
        return self._get(path, lambda r: Batch.from_json(_json(r)))

    def fetch(self, url: str) -> Call[bytes]:
        absolute = url if url.startswith(("http://", "https://")) else self.url(url)
        return Call(httpx.Request("GET", absolute), lambda r: checked(r).content)

    def events(self, key: str, read_timeout: float, connect_timeout: float) -> httpx.Request:
        """``GET /v1/images/{key}/events``: reads time out when the wait should end."""
        timeout = httpx.Timeout(connect_timeout, read=read_timeout)
        return httpx.Request("GET", self.url(f"/v1/images/{quote(key)}/events"),
                             headers={"Accept": "text/event-stream"},
                             extensions={"timeout": timeout.as_dict()})  # fmt: skip

    def sign(self, options: str | Mapping[str, object], key: str, expires_in: int | None) -> str:
        if not self.signing_secret:
            raise ValueError("sign needs the signing secret: Client(..., signing_secret=...) "
                             "(the server's api.signing_secret)")  # fmt: skip
        # Imported here: pixpipe.http.signing also reads settings (pydantic-settings), which
        # a client that never signs should not pay for at import.
        from ..http.options import parse_options
        from ..http.signing import transform_path

        text = options_text(options)
        if expires_in is not None:
            text = "/".join(p for p in (text, f"exp:{int(time.time()) + expires_in}") if p)
        parse_options(text)  # a bad option is named now, not as a 400 when the URL is used
        return self.url(transform_path(self.signing_secret, text, key))


def _granted(response: httpx.Response) -> Uploaded | None:
    """pixpipe's own upload URL answers what it took; a store (S3's 204) answers nothing."""
    checked(response)
    if response.headers.get("content-type", "").startswith("application/json"):
        return Uploaded.from_json(response.json())
    return None


__all__ = ["Call", "Calls", "checked", "options_text"]
