"""The Lambda target against S3 (and SNS, SQS) served over HTTP by moto's stand-alone server:
every event shape AWS delivers, partial batch failures, quarantine, idempotence, the direct
resize, notifications, backup, and the SAM template through cfn-lint."""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
import subprocess
import sys
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import pytest
import pyvips

from pixpipe.aws import backup_handler, handler
from pixpipe.errors import PixpipeError
from pixpipe.recipe import Recipe
from pixpipe.storage import state_key
from tests.conftest_services import BUCKET, MotoS3
from tests.images import jpeg, photo
from tests.images import png as pyvips_png

EVENTS = Path(__file__).parent / "events"
TEMPLATE = Path(__file__).parents[1] / "deploy" / "aws" / "template.yaml"
PACKAGE_SCRIPT = TEMPLATE.with_name("package.py")
SPACED = "users/42/IMG 0001.jpg"
RECIPE = [
    {"name": "m", "width": 200, "height": 200},
    {"name": "sq", "width": 64, "height": 64, "fit": "cover"},
]

pytestmark = pytest.mark.filterwarnings(
    # moto's SNS → SQS delivery and botocore's clients use datetime.utcnow on some versions
    "ignore:datetime.datetime.utcnow:DeprecationWarning",
)


def sample(name: str) -> Any:
    return json.loads((EVENTS / name).read_text())


@dataclass(frozen=True)
class Context:
    """The attributes of Lambda's context object that powertools reads."""

    function_name: str = "pixpipe-variants"
    function_version: str = "$LATEST"
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:pixpipe-variants"
    memory_limit_in_mb: int = 2048
    aws_request_id: str = "c6af9ac6-7b61-11e6-9a41-93e812345678"
    log_group_name: str = "/aws/lambda/pixpipe-variants"
    log_stream_name: str = "2024/01/01/[$LATEST]abcdef"

    remaining_ms: int = 60_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


CONTEXT = Context()


@dataclass(frozen=True)
class Deployment:
    """Five stores under one unique prefix of the moto bucket, and ways to look inside."""

    moto: MotoS3
    prefix: str

    def path(self, store: str, key: str) -> str:
        return f"{self.prefix}/{store}/{key}"

    def upload(self, key: str, data: bytes) -> str:
        put = self.moto.client().put_object(
            Bucket=BUCKET, Key=self.path("originals", key), Body=data
        )
        return str(put["ETag"]).strip('"')

    def head(self, store: str, key: str) -> dict[str, Any] | None:
        try:
            head = self.moto.client().head_object(Bucket=BUCKET, Key=self.path(store, key))
        except Exception:  # botocore's ClientError: 404
            return None
        return {k: v for k, v in head.items() if k != "ResponseMetadata"}

    def read(self, store: str, key: str) -> bytes:
        got = self.moto.client().get_object(Bucket=BUCKET, Key=self.path(store, key))
        return bytes(got["Body"].read())

    def s3_event(self, key: str, etag: str, size: int = 1) -> dict[str, Any]:
        """AWS's S3 notification sample, naming ``key`` as S3 does (URL-encoded, + = space)."""
        event = sample("s3-put.json")
        s3 = event["Records"][0]["s3"]
        s3["bucket"].update(name=BUCKET, arn=f"arn:aws:s3:::{BUCKET}")
        s3["object"].update(
            key=quote_plus(self.path("originals", key), safe="/"), eTag=etag, size=size
        )
        return event

    def eventbridge(self, key: str, etag: str) -> dict[str, Any]:
        event = sample("eventbridge-object-created.json")
        event["resources"] = [f"arn:aws:s3:::{BUCKET}"]
        event["detail"]["bucket"]["name"] = BUCKET
        event["detail"]["object"].update(key=self.path("originals", key), etag=etag)
        return event


def sns(s3_event: dict[str, Any]) -> dict[str, Any]:
    event = sample("sns-notification.json")
    event["Records"][0]["Sns"]["Message"] = json.dumps(s3_event)
    return event


def sqs(*s3_events: dict[str, Any], receive_count: int = 1) -> dict[str, Any]:
    """An SQS batch, one message per S3 event, each body an SNS notification (SNS → SQS)."""
    event = sample("sqs-receive.json")
    template = event["Records"][0]
    event["Records"] = []
    for i, s3_event in enumerate(s3_events):
        body = sample("sns-message-in-sqs.json")
        body["Message"] = json.dumps(s3_event)
        record = copy.deepcopy(template)
        record.update(messageId=f"msg-{i}", body=json.dumps(body))
        record["attributes"]["ApproximateReceiveCount"] = str(receive_count)
        event["Records"].append(record)
    return event


@pytest.fixture
def aws(aws_env: MotoS3, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Deployment:
    """The Lambda's configuration, as the template sets it, on a fresh prefix."""
    deployment = Deployment(aws_env, f"lambda-{uuid.uuid4().hex[:12]}")
    for store in ("originals", "variants", "backup", "quarantine", "cache"):
        url = f"s3://{BUCKET}/{deployment.prefix}/{store}"
        monkeypatch.setenv(f"PIXPIPE_STORES__{store.upper()}", url)
    monkeypatch.setenv("PIXPIPE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PIXPIPE_VARIANTS", json.dumps(RECIPE))
    monkeypatch.delenv("PIXPIPE_AWS__PROCESSED_TOPIC_ARN", raising=False)
    monkeypatch.delenv("PIXPIPE_AWS__INVOKE_FORMAT", raising=False)
    monkeypatch.chdir(tmp_path)  # no pixpipe.toml from the working tree
    return deployment


def size_of(data: bytes) -> tuple[int, int]:
    image = pyvips.Image.new_from_buffer(data, "")
    return image.width, image.height


def states(response: dict[str, Any]) -> list[str]:
    return [o["state"] for o in response["objects"]]


def test_s3_event_with_a_spaced_key_renders_every_variant(aws: Deployment) -> None:
    etag = aws.upload(SPACED, jpeg(photo(800, 500)))
    response = handler(aws.s3_event(SPACED, etag), CONTEXT)
    assert response["objects"][0]["key"] == SPACED
    assert states(response) == ["done"]
    assert size_of(aws.read("variants", "m/users/42/IMG 0001.jpg")) == (200, 125)
    assert size_of(aws.read("variants", "sq/users/42/IMG 0001.jpg")) == (64, 64)
    head = aws.head("variants", "m/users/42/IMG 0001.jpg")
    assert head is not None and head["ContentType"] == "image/jpeg"
    state = json.loads(aws.read("variants", state_key(SPACED)))
    assert (
        state["etag"] == etag
        and state["state"] == "done"
        and set(state["variants"])
        == {
            "m",
            "sq",
        }
    )


def test_sns_wrapped_s3_event(aws: Deployment) -> None:
    etag = aws.upload("a/b.png", jpeg(photo(300, 600)))
    response = handler(sns(aws.s3_event("a/b.png", etag)), CONTEXT)
    assert states(response) == ["done"]
    assert size_of(aws.read("variants", "m/a/b.jpg")) == (100, 200)


def test_eventbridge_object_created(aws: Deployment) -> None:
    etag = aws.upload(SPACED, jpeg(photo(400, 400)))
    response = handler(aws.eventbridge(SPACED, etag), CONTEXT)
    assert states(response) == ["done"]
    assert size_of(aws.read("variants", "m/users/42/IMG 0001.jpg")) == (200, 200)


def test_sqs_batch_quarantines_the_bad_original_and_keeps_the_good(aws: Deployment) -> None:
    good = aws.upload("good.jpg", jpeg(photo(300, 200)))
    bad = aws.upload("bad.jpg", b"\xff\xd8\xff\xe0 this is not really a JPEG")
    event = sqs(aws.s3_event("bad.jpg", bad), aws.s3_event("good.jpg", good))
    response = handler(event, CONTEXT)
    # A permanent failure is dealt with (quarantined), so it must not come back from the queue.
    assert response == {"batchItemFailures": []}
    assert aws.head("variants", "m/good.jpg") is not None
    assert aws.head("originals", "bad.jpg") is None
    assert aws.read("quarantine", "bad.jpg").startswith(b"\xff\xd8")
    record = json.loads(aws.read("quarantine", "_pixpipe/errors/bad.jpg.json"))
    assert record["kind"] in ("corrupt", "unsupported") and record["attempts"] == 1


@pytest.mark.parametrize("receive_count", [1, 3])
def test_sqs_batch_reports_transient_failures_only(
    aws: Deployment, monkeypatch: pytest.MonkeyPatch, receive_count: int
) -> None:
    from pixpipe.aws.runtime import Runtime

    good = aws.upload("good.jpg", jpeg(photo(300, 200)))
    flaky = aws.upload("flaky.jpg", jpeg(photo(301, 200)))
    real_render = Runtime.render

    async def render(self: Runtime, data: bytes, recipe: Recipe) -> Any:
        if size_of(data)[0] == 301:
            raise PixpipeError("transient", "S3 said SlowDown")
        return await real_render(self, data, recipe)

    monkeypatch.setattr(Runtime, "render", render)
    event = sqs(aws.s3_event("good.jpg", good), aws.s3_event("flaky.jpg", flaky),
                receive_count=receive_count)  # fmt: skip
    response = handler(event, CONTEXT)
    assert response == {"batchItemFailures": [{"itemIdentifier": "msg-1"}]}
    assert aws.head("variants", "m/good.jpg") is not None
    assert aws.head("originals", "flaky.jpg") is not None  # transient: the original stays
    # The last attempt (maxReceiveCount = retry.attempts = 3) is recorded before the DLQ.
    recorded = aws.head("quarantine", "_pixpipe/errors/flaky.jpg.json") is not None
    assert recorded == (receive_count == 3)
    assert aws.head("quarantine", "flaky.jpg") is None


def test_a_render_over_its_time_limit_is_retried_once_then_quarantined(
    aws: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In-process renders stop at ``limits.max_seconds`` too (libvips' kill flag): the first
    time the message goes back to the queue, original untouched; the second is too_large."""
    monkeypatch.setenv("PIXPIPE_LIMITS__MAX_SECONDS", "0.002")
    slow = aws.upload("slow.jpg", jpeg(photo(4000, 3000)))
    first = handler(sqs(aws.s3_event("slow.jpg", slow)), CONTEXT)
    assert first == {"batchItemFailures": [{"itemIdentifier": "msg-0"}]}
    assert aws.head("originals", "slow.jpg") is not None
    assert aws.head("quarantine", "_pixpipe/errors/slow.jpg.json") is None
    second = handler(sqs(aws.s3_event("slow.jpg", slow), receive_count=2), CONTEXT)
    assert second == {"batchItemFailures": []}
    record = json.loads(aws.read("quarantine", "_pixpipe/errors/slow.jpg.json"))
    assert record["kind"] == "too_large" and "0.002 s" in record["message"]
    assert aws.head("originals", "slow.jpg") is None


def test_an_image_is_not_started_without_its_time_left_in_the_invocation(
    aws: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pixpipe.aws.handlers import MARGIN_S, MIN_START_S

    etags = [aws.upload(f"late-{n}.jpg", jpeg(photo(300, 200))) for n in range(2)]
    event = sqs(*(aws.s3_event(f"late-{n}.jpg", e) for n, e in enumerate(etags)))
    short = dataclasses.replace(CONTEXT, remaining_ms=int((MIN_START_S + MARGIN_S) * 1000) - 1)
    response = handler(event, short)
    assert response == {"batchItemFailures": [{"itemIdentifier": f"msg-{n}"} for n in range(2)]}
    assert [aws.head("variants", f"m/late-{n}.jpg") for n in range(2)] == [None, None]
    assert all(aws.head("originals", f"late-{n}.jpg") for n in range(2))  # untouched
    # With the time there, the same batch is done.
    assert handler(event, CONTEXT) == {"batchItemFailures": []}
    assert all(aws.head("variants", f"m/late-{n}.jpg") for n in range(2))


def test_a_render_cut_short_by_the_invocations_end_is_never_too_large(
    aws: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopped because the invocation was ending, not because the image is too much: transient
    even on the last attempt (recorded, never quarantined)."""
    from pixpipe.aws import handlers

    monkeypatch.setattr(handlers, "MIN_START_S", 0.01)
    slow = aws.upload("cut.jpg", jpeg(photo(4000, 3000)))
    ending = dataclasses.replace(CONTEXT, remaining_ms=int((handlers.MARGIN_S + 0.02) * 1000))
    response = handler(sqs(aws.s3_event("cut.jpg", slow), receive_count=3), ending)
    assert response == {"batchItemFailures": [{"itemIdentifier": "msg-0"}]}
    record = json.loads(aws.read("quarantine", "_pixpipe/errors/cut.jpg.json"))
    assert record["kind"] == "transient" and "ran out of time" in record["message"]
    assert aws.head("originals", "cut.jpg") is not None


def test_duplicate_delivery_is_idempotent(aws: Deployment) -> None:
    etag = aws.upload(SPACED, jpeg(photo(500, 500)))
    event = aws.s3_event(SPACED, etag)
    assert states(handler(event, CONTEXT)) == ["done"]
    first = aws.head("variants", "m/users/42/IMG 0001.jpg")
    assert states(handler(event, CONTEXT)) == ["skipped"]
    assert handler(sqs(event, event), CONTEXT) == {"batchItemFailures": []}
    assert aws.head("variants", "m/users/42/IMG 0001.jpg") == first
    # A new upload of the same key (new etag) is rendered again.
    etag2 = aws.upload(SPACED, jpeg(photo(500, 250, seed=2)))
    assert states(handler(aws.s3_event(SPACED, etag2), CONTEXT)) == ["done"]
    assert size_of(aws.read("variants", "m/users/42/IMG 0001.jpg")) == (200, 100)


def test_duplicate_delivery_of_a_quarantined_original(aws: Deployment) -> None:
    bad = aws.upload("bad.png", b"GIF89a but nothing else")
    event = aws.s3_event("bad.png", bad)
    assert states(handler(event, CONTEXT)) == ["failed"]
    record = aws.read("quarantine", "_pixpipe/errors/bad.png.json")
    assert states(handler(event, CONTEXT)) == ["skipped"]
    # The first record is kept.
    assert aws.read("quarantine", "_pixpipe/errors/bad.png.json") == record


def test_direct_invoke_resizes_one_original(aws: Deployment) -> None:
    aws.upload(SPACED, jpeg(photo(1000, 400)))
    payload = {**sample("invoke-resize.json"), "maxDimension": 250}
    assert payload["key"] == SPACED
    assert handler(payload, CONTEXT) == {"resultKey": "max250/users/42/IMG 0001.jpg"}
    assert size_of(aws.read("variants", "max250/users/42/IMG 0001.jpg")) == (250, 100)
    first = aws.head("variants", "max250/users/42/IMG 0001.jpg")
    assert handler(payload, CONTEXT) == {"resultKey": "max250/users/42/IMG 0001.jpg"}
    assert aws.head("variants", "max250/users/42/IMG 0001.jpg") == first  # reused


def test_direct_invoke_in_a_warm_container_gets_its_own_time(aws: Deployment) -> None:
    """Lambda calls every invocation of a container in the same thread: the deadline an
    earlier invocation left behind must not cut a direct resize short (it did: "the
    invocation ran out of time (0.0 s were left)", seen in CI)."""
    from pixpipe.aws.runtime import INVOCATION_DEADLINE

    aws.upload("warm.jpg", jpeg(photo(1000, 400)))
    stale = INVOCATION_DEADLINE.set(time.monotonic() - 60)  # an invocation long over
    try:
        result = handler({"key": "warm.jpg", "maxDimension": 100}, CONTEXT)
    finally:
        INVOCATION_DEADLINE.reset(stale)
    assert result == {"resultKey": "max100/warm.jpg"}


def test_direct_invoke_keeps_a_web_format_and_never_enlarges(aws: Deployment) -> None:
    aws.upload("p.png", pyvips_png(photo(300, 300)))
    assert handler({"key": "p.png", "maxDimension": 2000}, CONTEXT) == {
        "resultKey": "max2000/p.png"
    }
    assert size_of(aws.read("variants", "max2000/p.png")) == (300, 300)  # never enlarged


@pytest.mark.parametrize(
    ("payload", "error", "match"),
    [
        ({"key": "p.jpg", "maxDimension": 0}, ValueError, "maxDimension must be"),
        ({"key": "p.jpg", "maxDimension": "800"}, ValueError, "maxDimension must be"),
        ({"key": "p.jpg"}, ValueError, "needs"),
        ({"key": "/abs.jpg", "maxDimension": 80}, ValueError, "must not start with"),
        ({"key": "nothing-here.jpg", "maxDimension": 80}, PixpipeError, "no original"),
    ],
)
def test_direct_invoke_errors(
    aws: Deployment, payload: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        handler(payload, CONTEXT)


def test_notifications_and_objects_elsewhere_are_ignored(aws: Deployment) -> None:
    assert handler(sample("s3-test-event.json"), CONTEXT) == {"objects": []}
    other = aws.s3_event("x.jpg", "0" * 32)
    other["Records"][0]["s3"]["bucket"]["name"] = "someone-elses-bucket"
    assert handler(other, CONTEXT) == {"objects": []}
    removed = aws.s3_event("x.jpg", "0" * 32)
    removed["Records"][0]["eventName"] = "ObjectRemoved:Delete"
    assert handler(removed, CONTEXT) == {"objects": []}


def test_image_processed_and_failed_are_published_to_sns(
    aws: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    sns_client = boto3.client("sns", region_name="us-east-1")
    sqs_client = boto3.client("sqs", region_name="us-east-1")
    name = f"processed-{aws.prefix}"
    topic = sns_client.create_topic(Name=name)["TopicArn"]
    queue = sqs_client.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs_client.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
    sns_client.subscribe(TopicArn=topic, Protocol="sqs",
                         Endpoint=queue_arn["Attributes"]["QueueArn"])  # fmt: skip
    monkeypatch.setenv("PIXPIPE_AWS__PROCESSED_TOPIC_ARN", topic)
    good = aws.upload(SPACED, jpeg(photo(300, 200)))
    bad = aws.upload("bad.jpg", b"nope")
    handler(sqs(aws.s3_event(SPACED, good), aws.s3_event("bad.jpg", bad)), CONTEXT)
    got = sqs_client.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=2)
    envelopes = [json.loads(m["Body"]) for m in got.get("Messages", [])]
    by_subject = {e["MessageAttributes"]["subject"]["Value"]: json.loads(e["Message"])
                  for e in envelopes}  # fmt: skip
    processed = by_subject["pixpipe.image.processed"]
    assert processed["key"] == SPACED and processed["etag"] == good
    assert {v["name"] for v in processed["variants"]} == {"m", "sq"}
    assert by_subject["pixpipe.image.failed"]["key"] == "bad.jpg"


def test_backup_handler_copies_originals_once(aws: Deployment) -> None:
    data = jpeg(photo(200, 200))
    etag = aws.upload(SPACED, data)
    event = sqs(aws.s3_event(SPACED, etag))
    assert backup_handler(event, CONTEXT) == {"batchItemFailures": []}
    assert aws.read("backup", SPACED) == data
    first = aws.head("backup", SPACED)
    backup_handler(event, CONTEXT)
    assert aws.head("backup", SPACED) == first
    response = backup_handler(aws.s3_event(SPACED, etag), CONTEXT)
    assert states(response) == ["skipped"]


def test_template_passes_cfn_lint() -> None:
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    command = str(cfn_lint) if cfn_lint.exists() else shutil.which("cfn-lint")
    assert command, "cfn-lint is not installed (it is in the dev extra)"
    run = subprocess.run([command, str(TEMPLATE)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr


def test_sqs_with_s3_events_as_bodies(aws: Deployment) -> None:
    """S3 → SQS directly (or SNS with raw message delivery): the body is the S3 event."""
    etag = aws.upload(SPACED, jpeg(photo(300, 200)))
    event = sqs(aws.s3_event(SPACED, etag))
    event["Records"][0]["body"] = json.dumps(aws.s3_event(SPACED, etag))
    assert handler(event, CONTEXT) == {"batchItemFailures": []}
    assert size_of(aws.read("variants", "m/users/42/IMG 0001.jpg")) == (200, 133)


def test_sns_fan_out_through_real_queues_reaches_both_functions(aws: Deployment) -> None:
    """The template's wiring on moto: S3's notification published to the uploads topic, fanned
    out to the variants and backup queues; what SQS hands over is what the functions get."""
    import boto3

    sns_client = boto3.client("sns", region_name="us-east-1")
    sqs_client = boto3.client("sqs", region_name="us-east-1")
    topic = sns_client.create_topic(Name=f"uploads-{aws.prefix}")["TopicArn"]
    queues = {}
    for role in ("variants", "backup"):
        url = sqs_client.create_queue(QueueName=f"{role}-{aws.prefix}")["QueueUrl"]
        arn = sqs_client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        queues[role] = (url, arn["Attributes"]["QueueArn"])
        sns_client.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queues[role][1])
    data = jpeg(photo(400, 300))
    etag = aws.upload(SPACED, data)
    sns_client.publish(TopicArn=topic, Subject="Amazon S3 Notification",
                       Message=json.dumps(aws.s3_event(SPACED, etag)))  # fmt: skip

    def delivered(role: str) -> dict[str, Any]:
        url, arn = queues[role]
        got = sqs_client.receive_message(QueueUrl=url, AttributeNames=["All"], WaitTimeSeconds=2)
        records = [
            {"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
             "attributes": m["Attributes"], "messageAttributes": {}, "md5OfBody": m["MD5OfBody"],
             "eventSource": "aws:sqs", "eventSourceARN": arn, "awsRegion": "us-east-1"}
            for m in got["Messages"]
        ]  # fmt: skip
        return {"Records": records}

    assert handler(delivered("variants"), CONTEXT) == {"batchItemFailures": []}
    assert size_of(aws.read("variants", "m/users/42/IMG 0001.jpg")) == (200, 150)
    assert backup_handler(delivered("backup"), CONTEXT) == {"batchItemFailures": []}
    assert aws.read("backup", SPACED) == data


def _template() -> Any:
    from cfnlint.decode import cfn_yaml

    return cfn_yaml.load(str(TEMPLATE))


def _of_type(resources: dict[str, Any], kind: str) -> dict[str, Any]:
    return {name: r for name, r in resources.items() if r["Type"] == kind}


def test_every_cdn_behaviour_sends_nosniff_and_a_sandbox_csp() -> None:
    """An uploaded SVG or HTML served by CloudFront must not script the CDN's domain."""
    resources = _template()["Resources"]
    (distribution,) = _of_type(resources, "AWS::CloudFront::Distribution").values()
    config = distribution["Properties"]["DistributionConfig"]
    behaviours = [config["DefaultCacheBehavior"], *config["CacheBehaviors"]]
    policies = {b["ResponseHeadersPolicyId"]["Ref"] for b in behaviours}
    (name,) = policies
    security = resources[name]["Properties"]["ResponseHeadersPolicyConfig"]
    headers = security["SecurityHeadersConfig"]
    assert headers["ContentTypeOptions"]["Override"] is True
    csp = headers["ContentSecurityPolicy"]
    assert csp["Override"] is True and "sandbox" in csp["ContentSecurityPolicy"]
    from pixpipe.http.delivery import SAFE

    assert csp["ContentSecurityPolicy"] == SAFE["Content-Security-Policy"]  # as pixpipe sends


def test_template_has_what_the_contract_names() -> None:
    """PRODUCT.md §8 / issue #5, resource by resource."""
    resources = _template()["Resources"]
    buckets = _of_type(resources, "AWS::S3::Bucket")
    assert set(buckets) == {"UploadsBucket", "ProcessedBucket", "BackupBucket", "QuarantineBucket",
                            "CacheBucket"}  # fmt: skip
    backup = buckets["BackupBucket"]["Properties"]
    assert backup["VersioningConfiguration"] == {"Status": "Enabled"}
    policy = resources["BackupBucketPolicy"]["Properties"]
    assert policy["Bucket"] == {"Ref": "BackupBucket"}
    denied = [s for s in policy["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
    assert any({"s3:DeleteObject", "s3:DeleteObjectVersion"} <= set(s["Action"]) for s in denied)
    # Uploads → SNS → one queue per role, each with a dead-letter queue and an alarm on it.
    (notify,) = buckets["UploadsBucket"]["Properties"]["NotificationConfiguration"][
        "TopicConfigurations"
    ]
    assert notify["Topic"] == {"Ref": "UploadsTopic"} and notify["Event"] == "s3:ObjectCreated:*"
    subscriptions = _of_type(resources, "AWS::SNS::Subscription")
    fanned = {s["Properties"]["Endpoint"]["Fn::GetAtt"][0] for s in subscriptions.values()
              if s["Properties"]["TopicArn"] == {"Ref": "UploadsTopic"}}  # fmt: skip
    assert fanned == {"VariantsQueue", "BackupQueue"}
    alarmed = {a["Properties"]["Dimensions"][0]["Value"]["Fn::GetAtt"][0]
               for a in _of_type(resources, "AWS::CloudWatch::Alarm").values()}  # fmt: skip
    for queue in fanned:
        redrive = resources[queue]["Properties"]["RedrivePolicy"]
        dlq = redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]
        assert resources[dlq]["Type"] == "AWS::SQS::Queue" and dlq in alarmed
    # Two queue-fed functions and the transforms' (tests/test_aws_transforms.py), memory and
    # timeout from parameters, partial batch responses, tight policies.
    functions = _of_type(resources, "AWS::Serverless::Function")
    handlers = {f["Properties"]["Handler"]: f["Properties"] for f in functions.values()}
    assert set(handlers) == {"pixpipe.aws.handler", "pixpipe.aws.backup_handler",
                             "pixpipe.aws.transform_handler"}  # fmt: skip
    for handler_name, props in handlers.items():
        assert set(props["MemorySize"]) == {"Ref"} and set(props["Timeout"]) == {"Ref"}
        if handler_name != "pixpipe.aws.transform_handler":
            (source,) = props["Events"].values()
            assert source["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        for statement in props["Policies"][0]["Statement"]:
            action = statement["Action"]
            actions = [action] if isinstance(action, str) else action
            assert statement["Resource"] != "*" and not any(a.endswith("*") for a in actions)
    # CloudFront: Origin Access Control, originals before the variants' wider pattern.
    config = resources["Distribution"]["Properties"]["DistributionConfig"]
    assert all("OriginAccessControlId" in o for o in config["Origins"])
    # A bucket's RegionalDomainName, or the host of the function's URL (its 3rd "/" part).
    domains = {o["Id"]: o["DomainName"] for o in config["Origins"]}
    origins = {name: (d.get("Fn::GetAtt") or d["Fn::Select"][1]["Fn::Split"][1]["Fn::GetAtt"])[0]
               for name, d in domains.items()}  # fmt: skip
    routes = [(b["PathPattern"], origins[b["TargetOriginId"]]) for b in config["CacheBehaviors"]]
    assert routes == [("uploads/images/original/*", "UploadsBucket"),
                      ("uploads/images/*", "ProcessedBucket"),
                      *((f"{p}/*", "TransformFunctionUrl") for p in ("t", "imgproxy", "thumbor")),
                      ("cache/*", "CacheBucket")]  # fmt: skip
    # Variants are cached by path and version; only a versioned URL is made immutable.
    variants = config["CacheBehaviors"][1]
    policy = resources[variants["CachePolicyId"]["Ref"]]["Properties"]["CachePolicyConfig"]
    query = policy["ParametersInCacheKeyAndForwardedToOrigin"]["QueryStringsConfig"]
    assert query == {"QueryStringBehavior": "whitelist", "QueryStrings": ["v"]}
    (association,) = variants["FunctionAssociations"]
    function = resources[association["FunctionARN"]["Fn::GetAtt"][0]]["Properties"]
    assert association["EventType"] == "viewer-response"
    assert "querystring.v" in function["FunctionCode"] and "immutable" in function["FunctionCode"]
    assert "ProcessedTopic" in _of_type(resources, "AWS::SNS::Topic")


def test_template_deploys_what_make_lambda_package_builds() -> None:
    package = _package_module()
    template = _template()
    function = template["Globals"]["Function"]
    code = (TEMPLATE.parent / function["CodeUri"]).resolve()
    assert code == package.ROOT / "build" / "lambda" / "pixpipe-lambda.zip"
    assert function["Runtime"] == f"python{package.PYTHON}"
    assert template["Parameters"]["Architecture"]["Default"] == package.DEFAULT_ARCH


def _package_module() -> Any:
    """deploy/aws/package.py, imported from its path (deploy/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("lambda_package", PACKAGE_SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("width", "height", "seed"), [(800, 500, 1), (500, 800, 2), (123, 77, 3)])
@pytest.mark.parametrize("alpha", [False, True])
def test_thumbhash_stand_in_gives_the_bindings_bytes(
    width: int, height: int, seed: int, alpha: bool
) -> None:
    """The arm64 package's pure-Python ThumbHash (no arm64 wheel of fast-thumbhash)."""
    import importlib.util

    import fast_thumbhash

    spec = importlib.util.spec_from_file_location("stand_in", PACKAGE_SCRIPT.with_name(
        "thumbhash_fallback.py"))  # fmt: skip
    assert spec and spec.loader
    stand_in = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stand_in)
    small = photo(width, height, seed=seed).thumbnail_image(32, height=32)
    small = small.bandjoin(small.extract_band(0) if alpha else 255)
    rgba = bytes(small.write_to_memory())
    expected = bytes(fast_thumbhash.rgba_to_thumb_hash(small.width, small.height, rgba))
    assert stand_in.rgba_to_thumb_hash(small.width, small.height, rgba) == expected


def test_lambda_package_imports_and_renders_in_a_bare_python(tmp_path: Path) -> None:
    """`make lambda-package` for this machine's architecture: the manylinux wheels from PyPI,
    unpacked and run by the Lambda's Python version with -I -S (no site-packages): the handler
    renders an S3 notification's image and answers a direct resize (deploy/aws/smoke.py)."""
    package = _package_module()
    arch = package.host_arch()
    if arch is None or package.find_python(package.PYTHON) is None:
        pytest.skip(f"needs python{package.PYTHON} on an x86_64 or arm64 machine")
    run = subprocess.run(
        [sys.executable, str(PACKAGE_SCRIPT), "--arch", arch, "--default", arch,
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    smoke = next(line for line in run.stdout.splitlines() if line.startswith("smoke test ("))
    result = json.loads(smoke.split(": ", 1)[1])
    assert result["resultKey"] == "max300/smoke/IMG 0001.jpg"
    assert "m/smoke/IMG 0001.jpg" in result["variants"]
    with zipfile.ZipFile(tmp_path / "pixpipe-lambda.zip") as archive:
        names = set(archive.namelist())
        unzipped = sum(i.file_size for i in archive.infolist())
    assert {"pixpipe/aws/handlers.py", "pyvips/__init__.py"} <= names
    assert not any(n.startswith(("uvicorn/", "pebble/", "matplotlib/", "boto3/")) for n in names)
    assert unzipped < package.UNZIPPED_LIMIT
