"""The events on the bus, and S3/MinIO/EventBridge notifications turned into them.

Each event is a frozen pydantic model with its ``subject``; ``to_dict()`` is the JSON payload
(PRODUCT.md §7) and ``parse(subject, data)`` reads one back.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import unquote_plus, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

SUBJECT_OBJECT_CREATED = "pixpipe.object.created"
SUBJECT_IMAGE_PROCESSED = "pixpipe.image.processed"
SUBJECT_IMAGE_FAILED = "pixpipe.image.failed"
SUBJECT_BATCH_DONE = "pixpipe.batch.done"


def _now() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    """Base of every bus event."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    subject: ClassVar[str]

    @property
    def msg_id(self) -> str | None:
        """The ``Nats-Msg-Id`` that makes republishing within two minutes harmless."""
        return None

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)

    def to_json(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()


class ObjectCreated(Event):
    """An original arrived in the originals store."""

    subject: ClassVar[str] = SUBJECT_OBJECT_CREATED
    key: str
    size: int = Field(ge=0)
    etag: str | None = None
    content_type: str | None = None
    time: datetime = Field(default_factory=_now)
    bucket: str | None = None  # set when it came from a bucket notification
    again: bool | None = None  # announced again by pixpipe (an id of its own, past dedup)

    @field_validator("etag")
    @classmethod
    def _bare_etag(cls, value: str | None) -> str | None:
        # S3 notifications carry the etag bare, HTTP and obstore quote it: one form for dedup.
        return value.strip('"') if value else value

    @property
    def msg_id(self) -> str:
        first = f"{self.key}@{self.etag or self.time.isoformat()}"
        return f"{first}#again@{self.time.isoformat()}" if self.again else first


class VariantInfo(BaseModel):
    """One rendered variant, as reported in ``ImageProcessed``."""

    model_config = ConfigDict(frozen=True)
    name: str
    key: str
    width: int
    height: int
    bytes: int
    format: str
    version: str | None = None  # the ``?v=`` that makes its URL immutable (``Variant.version``)


class ImageProcessed(Event):
    subject: ClassVar[str] = SUBJECT_IMAGE_PROCESSED
    key: str
    variants: tuple[VariantInfo, ...]
    duration_ms: float
    etag: str | None = None  # the original's, to tell one upload of a key from the next

    @property
    def msg_id(self) -> str:
        return f"processed:{self.key}@{self.etag}" if self.etag else f"processed:{self.key}"


class ImageFailed(Event):
    subject: ClassVar[str] = SUBJECT_IMAGE_FAILED
    key: str
    kind: str
    message: str
    attempts: int = 1


class BatchDone(Event):
    subject: ClassVar[str] = SUBJECT_BATCH_DONE
    id: str
    done: int
    failed: int

    @property
    def msg_id(self) -> str:
        return f"batch:{self.id}"


EVENTS: dict[str, type[Event]] = {
    cls.subject: cls for cls in (ObjectCreated, ImageProcessed, ImageFailed, BatchDone)
}


def parse(subject: str, data: bytes | str) -> Event:
    """Read an event from its subject and JSON payload."""
    try:
        cls = EVENTS[subject]
    except KeyError:
        raise ValueError(f"unknown event subject {subject!r}") from None
    return cls.model_validate_json(data)


def _json(value: Any) -> Any:
    if isinstance(value, str | bytes):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def _walk(doc: Any) -> Iterator[ObjectCreated]:
    """Peel envelopes (SNS, SQS, MinIO) until S3 records or an EventBridge event remain."""
    doc = _json(doc)
    if not isinstance(doc, dict):
        return
    if doc.get("Type") == "Notification" and "Message" in doc:  # SNS envelope in an SQS body
        yield from _walk(doc["Message"])
        return
    if doc.get("source") == "aws.s3" and isinstance(doc.get("detail"), dict):
        if doc.get("detail-type") == "Object Created":
            yield _from_eventbridge(doc)
        return
    for record in doc.get("Records") or ():
        if not isinstance(record, dict):
            continue
        if "Sns" in record:
            yield from _walk(record["Sns"].get("Message"))
        elif "body" in record and "s3" not in record:  # SQS
            yield from _walk(record["body"])
        elif "s3" in record and "ObjectCreated:" in str(record.get("eventName", "")):
            yield _from_record(record)


def _from_record(record: dict[str, Any]) -> ObjectCreated:
    s3 = record["s3"]
    obj = s3["object"]
    return ObjectCreated(
        key=unquote_plus(obj["key"]),  # S3 encodes keys in notifications, '+' for spaces
        size=int(obj.get("size") or 0),
        etag=obj.get("eTag") or obj.get("etag"),
        content_type=obj.get("contentType") or None,  # MinIO sends it, AWS does not
        time=record.get("eventTime") or _now(),
        bucket=(s3.get("bucket") or {}).get("name"),
    )


def _from_eventbridge(doc: dict[str, Any]) -> ObjectCreated:
    detail = doc["detail"]
    obj = detail["object"]
    return ObjectCreated(
        key=obj["key"],  # EventBridge sends the key as is, not URL-encoded
        size=int(obj.get("size") or 0),
        etag=obj.get("etag"),
        time=doc.get("time") or _now(),
        bucket=(detail.get("bucket") or {}).get("name"),
    )


def parse_s3_notification(payload: dict[str, Any] | str | bytes) -> list[ObjectCreated]:
    """S3 event JSON (AWS, MinIO), EventBridge "Object Created", or either wrapped in SNS/SQS
    → the objects created. Other events (removals, ``s3:TestEvent``) give nothing."""
    return list(_walk(payload))


def objects_in(store_url: str, payload: dict[str, Any] | str | bytes) -> list[ObjectCreated]:
    """The objects a notification names that lie in the store at ``store_url``, with keys made
    relative to it: notifications give the bucket and the full object key, while an
    ``s3://bucket/prefix`` store addresses objects below its prefix. Objects of other buckets
    or outside the prefix are left out (a shared bucket notifies about everything)."""
    parts = urlsplit(store_url)
    prefix = parts.path.strip("/") + "/" if parts.path.strip("/") else ""
    out = []
    for event in _walk(payload):
        if not parts.scheme.startswith("s3"):
            out.append(event)  # relayed for a non-S3 store: the keys are ours already
        elif (not event.bucket or event.bucket == parts.netloc) and event.key.startswith(prefix):
            out.append(event.model_copy(update={"key": event.key[len(prefix) :]}))
    return out


__all__ = [
    "EVENTS",
    "SUBJECT_BATCH_DONE",
    "SUBJECT_IMAGE_FAILED",
    "SUBJECT_IMAGE_PROCESSED",
    "SUBJECT_OBJECT_CREATED",
    "BatchDone",
    "Event",
    "ImageFailed",
    "ImageProcessed",
    "ObjectCreated",
    "VariantInfo",
    "objects_in",
    "parse",
    "parse_s3_notification",
]
