"""Request and response bodies of the API, with the examples shown in ``/docs``."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

KEY = "users/42/IMG 0001.jpg"
BASE = "http://127.0.0.1:8000"
State = Literal["pending", "processing", "done", "failed"]


def _examples(*examples: dict[str, Any]) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": list(examples)})


class Uploaded(BaseModel):
    model_config = _examples({
        "key": KEY, "state": "pending",
        "original_url": f"{BASE}/images/original/users/42/IMG%200001.jpg",
        "variants": {"m": f"{BASE}/images/m/users/42/IMG%200001.jpg"},
    })  # fmt: skip
    key: str
    state: State
    original_url: str
    variants: dict[str, str] = Field(description="Where each variant will be, by name.")


class VariantState(BaseModel):
    url: str = Field(description="Versioned (``?v=``): immutable, changes with the original.")
    width: int
    height: int
    bytes: int
    format: str
    version: str | None = None


class ErrorInfo(BaseModel):
    kind: Literal["corrupt", "unsupported", "too_large", "missing", "transient"]
    message: str


class ImageState(BaseModel):
    model_config = _examples({
        "key": KEY, "state": "done",
        "variants": {"m": {"url": f"{BASE}/images/m/users/42/IMG%200001.jpg", "width": 800,
                           "height": 533, "bytes": 61234, "format": "jpeg"}},
        "placeholder": "1QcSHQRnh493V4dIh4eXh1h4kJUI", "dominant": "#7a6f5c",
    })  # fmt: skip
    key: str
    state: State
    variants: dict[str, VariantState] = Field(default_factory=dict)
    error: ErrorInfo | None = None
    placeholder: str | None = Field(None, description="ThumbHash (base64) of the image.")
    dominant: str | None = Field(None, description="The dominant colour, #rrggbb.")
    updated: datetime | None = None


class Failure(BaseModel):
    model_config = _examples({
        "key": "users/42/broken.jpg", "kind": "corrupt",
        "message": "jpeg: VipsJpeg: Premature end of input file", "attempts": 1,
        "time": "2025-01-01T12:00:00+00:00",
    })  # fmt: skip
    key: str
    kind: str
    message: str
    attempts: int | None = None
    time: datetime | None = None


class UploadRequest(BaseModel):
    model_config = _examples({"key": KEY, "content_type": "image/jpeg", "content_length": 1834112})
    key: str = Field(description="Where the original will live (the key rules apply).")
    content_type: str = Field(description="The Content-Type the upload must be sent with.")
    content_length: int = Field(ge=1, description="The exact size of the upload, in bytes.")
    expires_in: int = Field(900, ge=1, le=7 * 24 * 3600, description="Seconds the URL is valid.")


class PresignedUpload(BaseModel):
    model_config = _examples({
        "url": f"{BASE}/v1/uploads/users/42/IMG%200001.jpg?expires=1735732800&length=1834112"
               "&type=image%2Fjpeg&token=q1w2e3",
        "method": "PUT", "headers": {"Content-Type": "image/jpeg"},
        "expires_at": "2025-01-01T12:00:00+00:00",
    })  # fmt: skip
    url: str
    method: Literal["PUT", "POST"] = Field(
        "PUT", description="POST (S3): a multipart form, `fields` first, then the `file`."
    )
    headers: dict[str, str]
    fields: dict[str, str] = Field(default_factory=dict, description="Form fields of a POST.")
    expires_at: datetime


class InvokeRequest(BaseModel):
    model_config = ConfigDict(
        populate_by_name=True, json_schema_extra={"examples": [{"key": KEY, "maxDimension": 800}]}
    )
    key: str
    max_dimension: int = Field(alias="maxDimension", ge=1, le=16383)


class InvokeResult(BaseModel):
    model_config = ConfigDict(
        populate_by_name=True,
        json_schema_extra={"examples": [{"resultKey": "max800/users/42/IMG 0001.jpg"}]},
    )
    result_key: str = Field(alias="resultKey", description="The result's key in variants.")
    url: str | None = Field(None, description="Where the result is served.")
    width: int | None = None
    height: int | None = None


class Retrying(BaseModel):
    key: str
    state: State


class Accepted(BaseModel):
    accepted: list[str]


class Srcset(BaseModel):
    """What an ``<img>`` needs to pick its own size: ``<img src srcset sizes>``."""

    model_config = _examples({
        "src": f"{BASE}/images/l/users/42/IMG%200001.jpg?v=5d41402abc4b",
        "srcset": f"{BASE}/images/s/users/42/IMG%200001.jpg?v=7d793037a076 400w, "
                  f"{BASE}/images/m/users/42/IMG%200001.jpg?v=2aae6c35c94f 800w",
        "sizes": "100vw",
    })  # fmt: skip
    src: str
    srcset: str
    sizes: str


class Problem(BaseModel):
    """Every error: a message saying what was wrong, and a failure kind where one applies."""

    model_config = _examples({"detail": "upload is over the limit of 209715200 bytes",
                              "kind": "too_large"})  # fmt: skip
    detail: Any
    kind: str | None = None


__all__ = [
    "Accepted", "Failure", "ImageState", "InvokeRequest", "InvokeResult", "PresignedUpload",
    "Problem", "Retrying", "Srcset", "UploadRequest", "Uploaded",
]  # fmt: skip
