"""What the API answers, as frozen dataclasses: read once from the JSON, here."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

State = Literal["pending", "processing", "done", "failed"]
FINAL = ("done", "failed")


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


@dataclass(frozen=True)
class Uploaded:
    """An upload the API took: ``state`` is ``pending`` (``wait(key)`` for the variants).

    ``original_url`` serves the original at once; ``variants`` says where each variant will be
    served, by name, once made (unversioned URLs: the state's ``?v=`` URLs are the cacheable
    ones)."""

    key: str
    state: State
    original_url: str
    variants: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Uploaded:
        return cls(body["key"], body["state"], body["original_url"], dict(body["variants"]))


@dataclass(frozen=True)
class VariantState:
    """One variant made: its versioned URL (immutable: it changes when the original does),
    its size in pixels and bytes, its format and version."""

    url: str
    width: int
    height: int
    bytes: int
    format: str
    version: str | None = None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> VariantState:
        return cls(body["url"], body["width"], body["height"], body["bytes"], body["format"],
                   body.get("version"))  # fmt: skip


@dataclass(frozen=True)
class ErrorInfo:
    """Why an image failed: ``kind`` (corrupt, unsupported, too_large, missing, transient)."""

    kind: str
    message: str


@dataclass(frozen=True)
class ImageState:
    """One original and its variants: ``state`` is ``pending`` (stored, waiting for a worker,
    or held for its batch), ``processing``, ``done`` (``variants`` by name) or ``failed``
    (``error`` says why). ``placeholder`` is a ThumbHash (base64) and ``dominant`` the main
    colour (``#rrggbb``), for a page to show before the image loads."""

    key: str
    state: State
    variants: dict[str, VariantState] = field(default_factory=dict)
    error: ErrorInfo | None = None
    placeholder: str | None = None
    dominant: str | None = None
    updated: datetime | None = None

    @property
    def final(self) -> bool:
        """``done`` or ``failed``: it will not change unless the original is uploaded again."""
        return self.state in FINAL

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> ImageState:
        error = body.get("error")
        return cls(
            body["key"], body["state"],
            {name: VariantState.from_json(v) for name, v in body.get("variants", {}).items()},
            ErrorInfo(error["kind"], error["message"]) if error else None,
            body.get("placeholder"), body.get("dominant"), _time(body.get("updated")),
        )  # fmt: skip


@dataclass(frozen=True)
class Batch:
    """An order's batch: ``received`` of ``expected`` uploads are in; ``state`` is ``open``
    (uploads held), ``processing`` or ``done``; ``done``/``failed`` count the images so far;
    ``missing``: how many never arrived before the deadline."""

    id: str
    expected: int
    received: int
    state: Literal["open", "processing", "done"]
    done: int
    failed: int
    missing: int | None = None
    deadline: datetime | None = None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Batch:
        return cls(body["id"], body["expected"], body["received"], body["state"], body["done"],
                   body["failed"], body.get("missing"), _time(body.get("deadline")))  # fmt: skip


@dataclass(frozen=True)
class Srcset:
    """What an ``<img>`` needs to choose its own size: ``<img src srcset sizes>``."""

    src: str
    srcset: str
    sizes: str

    def attributes(self) -> str:
        """The three as HTML attributes, quoted (URLs from pixpipe carry no ``"``)."""
        return f'src="{self.src}" srcset="{self.srcset}" sizes="{self.sizes}"'


@dataclass(frozen=True)
class Grant:
    """Where to send an upload directly (``POST /v1/uploads``): ``method`` to ``url`` with
    ``headers``; a ``POST`` (S3) is a multipart form, ``fields`` first, then the ``file``.
    Hand it to a browser as it is (``pixpipe/http/static/upload.js`` takes it)."""

    url: str
    method: Literal["PUT", "POST"]
    headers: dict[str, str]
    fields: dict[str, str]
    expires_at: datetime

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Grant:
        return cls(body["url"], body["method"], dict(body["headers"]), dict(body["fields"]),
                   datetime.fromisoformat(body["expires_at"]))  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        """The grant as the API gave it (JSON-ready: for a browser)."""
        return {"url": self.url, "method": self.method, "headers": self.headers,
                "fields": self.fields, "expires_at": self.expires_at.isoformat()}  # fmt: skip


__all__ = ["FINAL", "Batch", "ErrorInfo", "Grant", "ImageState", "Srcset", "State", "Uploaded",
           "VariantState"]  # fmt: skip
