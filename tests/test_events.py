"""Event models and S3 notification parsing, on samples in AWS's and MinIO's documented shapes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from pixpipe.events import (
    EVENTS,
    BatchDone,
    ImageFailed,
    ImageProcessed,
    ObjectCreated,
    VariantInfo,
    parse,
    parse_s3_notification,
)


def s3_record(key: str, event: str = "ObjectCreated:Put", **obj: Any) -> dict[str, Any]:
    """One record as in AWS's "Event message structure" (version 2.1)."""
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-west-2",
        "eventTime": "1970-01-01T00:00:00.000Z",
        "eventName": event,
        "userIdentity": {"principalId": "AIDAJDPLRKLG7UEXAMPLE"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "testConfigRule",
            "bucket": {
                "name": "uploads",
                "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                "arn": "arn:aws:s3:::uploads",
            },
            "object": {
                "key": key,
                "size": 1024,
                "eTag": "d41d8cd98f00b204e9800998ecf8427e",
                "versionId": "096fKKXTRTtl3on89fVO.nfljtsv6qko",
                "sequencer": "0055AED6DCD90281E5",
                **obj,
            },
        },
    }


def s3_event(*records: dict[str, Any]) -> dict[str, Any]:
    return {"Records": list(records)}


def sns_wrapped(message: dict[str, Any]) -> dict[str, Any]:
    """An SNS → Lambda event: the S3 event is a JSON *string* in ``Sns.Message``."""
    return {
        "Records": [
            {
                "EventSource": "aws:sns",
                "EventVersion": "1.0",
                "EventSubscriptionArn": "arn:aws:sns:us-east-1:123456789012:uploads:2bcfbf39",
                "Sns": {
                    "Type": "Notification",
                    "MessageId": "95df01b4-ee98-5cb9-9903-4c221d41eb5e",
                    "TopicArn": "arn:aws:sns:us-east-1:123456789012:uploads",
                    "Subject": "Amazon S3 Notification",
                    "Message": json.dumps(message),
                    "Timestamp": "1970-01-01T00:00:00.000Z",
                },
            }
        ]
    }


def sqs_wrapped(body: dict[str, Any]) -> dict[str, Any]:
    """An SQS → Lambda event: the message is a JSON string in ``body``."""
    return {
        "Records": [
            {
                "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
                "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a...",
                "body": json.dumps(body),
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:variants",
                "awsRegion": "us-east-1",
            }
        ]
    }


EVENTBRIDGE = {
    "version": "0",
    "id": "17793124-05d4-b198-2fde-7ededc63b103",
    "detail-type": "Object Created",
    "source": "aws.s3",
    "account": "111122223333",
    "time": "2021-11-12T00:00:00Z",
    "region": "ca-central-1",
    "resources": ["arn:aws:s3:::uploads"],
    "detail": {
        "version": "0",
        "bucket": {"name": "uploads"},
        "object": {
            "key": "users/42/IMG 0001.jpg",
            "size": 5,
            "etag": "b1946ac92492d2347c6235b4d2611184",
            "sequencer": "00617F08299329D189",
        },
        "request-id": "N4N7GDK58NMKJ12R",
        "requester": "123456789012",
        "reason": "PutObject",
    },
}

MINIO = {
    "EventName": "s3:ObjectCreated:Put",
    "Key": "uploads/users/42/IMG 0001.jpg",
    "Records": [
        s3_record(
            "users%2F42%2FIMG+0001.jpg",
            event="s3:ObjectCreated:Put",
            contentType="image/jpeg",
            userMetadata={"content-type": "image/jpeg"},
        )
    ],
}


@pytest.mark.parametrize(
    ("encoded", "key"),
    [
        ("users/42/IMG+0001.jpg", "users/42/IMG 0001.jpg"),
        ("a%2Bb.jpg", "a+b.jpg"),
        ("%C3%BC/%E6%97%A5%E6%9C%AC.png", "ü/日本.png"),
        ("plain.jpg", "plain.jpg"),
    ],
)
def test_s3_keys_are_url_decoded(encoded: str, key: str) -> None:
    [created] = parse_s3_notification(s3_event(s3_record(encoded)))
    assert created.key == key
    assert (created.size, created.bucket) == (1024, "uploads")
    assert created.etag == "d41d8cd98f00b204e9800998ecf8427e"
    assert created.time == datetime(1970, 1, 1, tzinfo=UTC)


def test_only_created_objects_count() -> None:
    payload = s3_event(
        s3_record("a.jpg", "ObjectCreated:CompleteMultipartUpload"),
        s3_record("b.jpg", "ObjectRemoved:Delete"),
        s3_record("c.jpg", "ObjectCreated:Copy"),
    )
    assert [c.key for c in parse_s3_notification(payload)] == ["a.jpg", "c.jpg"]


@pytest.mark.parametrize(
    "payload",
    [
        {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "uploads"},
        {"Records": []},
        {},
        "not json",
        {**EVENTBRIDGE, "detail-type": "Object Deleted"},
    ],
)
def test_other_payloads_give_nothing(payload: Any) -> None:
    assert parse_s3_notification(payload) == []


@pytest.mark.parametrize(
    "wrap",
    [
        lambda e: e,
        sns_wrapped,
        sqs_wrapped,
        lambda e: sqs_wrapped(sns_wrapped(e)["Records"][0]["Sns"]),  # SNS → SQS, not raw
        lambda e: json.dumps(e),
        lambda e: json.dumps(e).encode(),
    ],
    ids=["direct", "sns", "sqs", "sns-in-sqs", "str", "bytes"],
)
def test_wrapped_s3_events(wrap: Any) -> None:
    [created] = parse_s3_notification(wrap(s3_event(s3_record("users/42/IMG+0001.jpg"))))
    assert created.key == "users/42/IMG 0001.jpg"
    assert created.etag == "d41d8cd98f00b204e9800998ecf8427e"


def test_eventbridge_keys_are_taken_as_is() -> None:
    for payload in (EVENTBRIDGE, sqs_wrapped(EVENTBRIDGE)):
        [created] = parse_s3_notification(payload)
        assert created.key == "users/42/IMG 0001.jpg"
        assert (created.size, created.bucket) == (5, "uploads")
        assert created.time == datetime(2021, 11, 12, tzinfo=UTC)


def test_minio_notification() -> None:
    [created] = parse_s3_notification(MINIO)
    assert created.key == "users/42/IMG 0001.jpg"
    assert created.content_type == "image/jpeg"


def test_msg_id_is_key_and_etag_whatever_the_quoting() -> None:
    from_api = ObjectCreated(key="a b.jpg", size=1, etag='"d41d8"')
    from_s3 = ObjectCreated(key="a b.jpg", size=1, etag="d41d8")
    assert from_api.msg_id == from_s3.msg_id == "a b.jpg@d41d8"
    assert ObjectCreated(key="a.jpg", size=1, etag='"e2"').msg_id != from_api.msg_id


def test_events_round_trip_through_their_subjects() -> None:
    events = [
        ObjectCreated(key="k.jpg", size=3, etag="e", content_type="image/jpeg"),
        ImageProcessed(
            key="k.jpg",
            variants=(
                VariantInfo(name="m", key="m/k.jpg", width=8, height=6, bytes=9, format="jpeg"),
            ),
            duration_ms=12.5,
        ),
        ImageFailed(key="k.jpg", kind="corrupt", message="truncated", attempts=1),
        BatchDone(id="b1", done=3, failed=1),
    ]
    for event in events:
        assert EVENTS[event.subject] is type(event)
        assert parse(event.subject, event.to_json()) == event
        assert json.loads(event.to_json()) == event.to_dict()
    assert set(EVENTS) == {
        "pixpipe.object.created",
        "pixpipe.image.processed",
        "pixpipe.image.failed",
        "pixpipe.batch.done",
    }
    assert events[1].to_dict()["variants"][0] == {
        "name": "m", "key": "m/k.jpg", "width": 8, "height": 6, "bytes": 9, "format": "jpeg",
    }  # fmt: skip


def test_events_are_frozen_and_validated() -> None:
    event = ObjectCreated(key="k", size=1)
    with pytest.raises(ValidationError):
        event.key = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        ObjectCreated(key="k", size=-1)
    with pytest.raises(ValueError, match="unknown event subject"):
        parse("pixpipe.nope", b"{}")
