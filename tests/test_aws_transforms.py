"""On-the-fly transforms on Lambda (``pixpipe.aws.transform_handler``): Function URL requests
(payload format 2.0, as CloudFront sends them through Origin Access Control) against S3 served
by moto's stand-alone server. Small results come back inline as base64; results over the inline
limit are stored in the cache bucket and answered with a redirect to them, so Lambda's 6 MB
response cap never refuses one; signatures, failure kinds and the compatible URLs are the
self-hosted route's. Then the template's new resources, and the handler from the Lambda zip."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from pixpipe.aws import transform_handler
from pixpipe.aws.transforms import INLINE_MAX, LAMBDA_RESPONSE_MAX
from pixpipe.compat import imgproxy, thumbor
from pixpipe.http.delivery import REVALIDATE
from pixpipe.http.signing import transform_path
from tests.conftest_services import BUCKET
from tests.images import jpeg, photo, png_bomb
from tests.test_aws import (
    CONTEXT,
    PACKAGE_SCRIPT,
    SPACED,
    Deployment,
    _of_type,
    _package_module,
    _template,
    aws,  # noqa: F401 (the fixture: the template's configuration on a fresh moto prefix)
    size_of,
)

pytestmark = pytest.mark.filterwarnings("ignore:datetime.datetime.utcnow:DeprecationWarning")
SECRET = "transforms-test-secret"
IMGPROXY_KEY, IMGPROXY_SALT = "736563726574", "68656C6C6F"  # imgproxy's docs example
THUMBOR_KEY = "my-security-key"
ACCEPT = "image/avif,image/webp,image/apng,image/*,*/*;q=0.8"  # a browser's, for an <img>


def url_event(path: str, method: str = "GET", **headers: str) -> dict[str, Any]:
    """A Function URL request as AWS documents payload 2.0: ``rawPath`` percent-encoded as
    sent, headers in lower case, the method in ``requestContext.http``."""
    raw, _, query = path.partition("?")
    return {
        "version": "2.0", "routeKey": "$default", "rawPath": raw, "rawQueryString": query,
        "headers": {"host": "abcdefgh.lambda-url.us-east-1.on.aws", "accept": ACCEPT,
                    "x-forwarded-proto": "https", "x-forwarded-port": "443",
                    "user-agent": "Amazon CloudFront", "via": "2.0 abc.cloudfront.net (CloudFront)",
                    **{k.replace("_", "-").lower(): v for k, v in headers.items()}},
        "requestContext": {
            "accountId": "anonymous", "apiId": "abcdefgh", "domainPrefix": "abcdefgh",
            "domainName": "abcdefgh.lambda-url.us-east-1.on.aws", "requestId": "req-1",
            "http": {"method": method, "path": raw, "protocol": "HTTP/1.1",
                     "sourceIp": "130.176.0.1", "userAgent": "Amazon CloudFront"},
            "routeKey": "$default", "stage": "$default", "time": "01/Jan/2026:00:00:00 +0000",
            "timeEpoch": 1767225600000,
        },
        "isBase64Encoded": False,
    }  # fmt: skip


@pytest.fixture
def tx(aws: Deployment, monkeypatch: pytest.MonkeyPatch) -> Deployment:  # noqa: F811
    """The transforms function's configuration, as the template sets it."""
    monkeypatch.setenv("PIXPIPE_API__SIGNING_SECRET", SECRET)
    monkeypatch.setenv("PIXPIPE_IMGPROXY__KEY", IMGPROXY_KEY)
    monkeypatch.setenv("PIXPIPE_IMGPROXY__SALT", IMGPROXY_SALT)
    monkeypatch.setenv("PIXPIPE_THUMBOR__SECURITY_KEY", THUMBOR_KEY)
    for name in ("PIXPIPE_AWS__INLINE_MAX_BYTES", "PIXPIPE_AWS__CACHE_URL"):
        monkeypatch.delenv(name, raising=False)
    return aws


def get(path: str, **headers: str) -> dict[str, Any]:
    answer = transform_handler(url_event(path, **headers), CONTEXT)
    assert len(json.dumps(answer)) < LAMBDA_RESPONSE_MAX  # whatever it is, Lambda can send it
    return answer


def body(answer: dict[str, Any]) -> bytes:
    assert answer["isBase64Encoded"] is True
    return base64.b64decode(answer["body"])


def problem(answer: dict[str, Any]) -> dict[str, Any]:
    assert answer["isBase64Encoded"] is False
    assert answer["headers"]["content-type"] == "application/json"
    return dict(json.loads(answer["body"]))


def cached(tx: Deployment) -> dict[str, int]:
    """The cache store's objects in moto: key → size."""
    listed = tx.moto.client().list_objects_v2(Bucket=BUCKET, Prefix=tx.path("cache", ""))
    return {o["Key"].removeprefix(tx.path("cache", "")): o["Size"]
            for o in listed.get("Contents", [])}  # fmt: skip


def redirected_key(answer: dict[str, Any]) -> str:
    assert answer["statusCode"] == 307, answer
    location = answer["headers"]["location"]
    assert location.startswith("/cache/")
    return str(location.removeprefix("/cache/"))


def test_a_small_result_is_answered_inline(tx: Deployment) -> None:
    tx.upload(SPACED, jpeg(photo(1200, 800)))
    path = transform_path(SECRET, "w:300/f:webp", SPACED)
    assert "%20" in path  # the key's space travels percent-encoded, as a browser sends it
    first = get(path)
    assert first["statusCode"] == 200, first
    headers = first["headers"]
    assert headers["content-type"] == "image/webp" and headers["x-cache"] == "miss"
    assert headers["cache-control"] == REVALIDATE
    assert size_of(body(first)) == (300, 200)
    # Kept in the cache bucket too, and the ETag is that object's.
    (stored,) = cached(tx)
    assert headers["etag"] == tx.head("cache", stored)["ETag"]  # type: ignore[index]
    again = get(path)
    assert again["statusCode"] == 200 and again["headers"]["x-cache"] == "hit"
    assert again["headers"]["etag"] == headers["etag"] and body(again) == body(first)
    revalidated = get(path, if_none_match=headers["etag"])
    assert revalidated["statusCode"] == 304 and revalidated.get("body", "") == ""


def test_a_result_over_the_inline_limit_is_stored_and_redirected_to(tx: Deployment) -> None:
    tx.upload(SPACED, jpeg(photo(2400, 1800)))
    path = transform_path(SECRET, "w:2400/f:png", SPACED)  # a PNG of ~6.5 MB: over Lambda's cap
    first = get(path)
    key = redirected_key(first)
    assert first["headers"]["x-cache"] == "miss" and first.get("body", "") == ""
    assert first["headers"]["cache-control"] == REVALIDATE
    assert cached(tx)[key] > INLINE_MAX  # the object the Location names is really there
    head = tx.head("cache", key)
    assert head is not None and head["ContentType"] == "image/png"
    assert size_of(tx.read("cache", key)) == (2400, 1800)
    # The second time it is a hit, and still a redirect: never streamed through Lambda.
    second = get(path)
    assert redirected_key(second) == key and second["headers"]["x-cache"] == "hit"


def test_the_inline_limit_is_a_setting_and_0_redirects_every_result(
    tx: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    tx.upload("p.jpg", jpeg(photo(600, 400)))
    path = transform_path(SECRET, "w:200/f:jpeg", "p.jpg")
    size = len(body(get(path)))
    monkeypatch.setenv("PIXPIPE_AWS__INLINE_MAX_BYTES", str(size))
    assert get(path)["statusCode"] == 200  # at the limit: inline
    monkeypatch.setenv("PIXPIPE_AWS__INLINE_MAX_BYTES", str(size - 1))
    assert cached(tx)[redirected_key(get(path))] == size  # one byte over: redirected
    monkeypatch.setenv("PIXPIPE_AWS__INLINE_MAX_BYTES", "0")
    monkeypatch.setenv("PIXPIPE_AWS__CACHE_URL", "https://img.example.com/cache/")
    answer = get(transform_path(SECRET, "w:50/f:webp", "p.jpg"))
    assert answer["statusCode"] == 307
    location = answer["headers"]["location"]
    assert location.startswith("https://img.example.com/cache/")
    assert location.removeprefix("https://img.example.com/cache/") in cached(tx)


@pytest.mark.parametrize("value", ["5000000", "-1", "4MB"])
def test_an_inline_limit_over_lambdas_cap_is_refused(
    tx: Deployment, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("PIXPIPE_AWS__INLINE_MAX_BYTES", value)
    with pytest.raises(ValueError, match=r"INLINE_MAX_BYTES must be .* to 4194304"):
        get(transform_path(SECRET, "w:50", "p.jpg"))


def test_a_bad_signature_is_403_and_says_why(tx: Deployment) -> None:
    tx.upload(SPACED, jpeg(photo(400, 300)))
    good = transform_path(SECRET, "w:100", SPACED)
    tampered = good.replace("w:100", "w:101")
    answer = get(tampered)
    assert answer["statusCode"] == 403
    assert "bad signature" in problem(answer)["detail"]
    other = get(transform_path("not-the-secret", "w:100", SPACED))
    assert other["statusCode"] == 403 and cached(tx) == {}  # nothing rendered for either


def test_a_missing_original_is_404_and_a_bad_key_400(tx: Deployment) -> None:
    answer = get(transform_path(SECRET, "w:100", "users/42/nothing here.jpg"))
    assert answer["statusCode"] == 404
    assert "no original" in problem(answer)["detail"]
    reserved = get(transform_path(SECRET, "w:100", "_pixpipe/errors/a.jpg.json"))
    assert reserved["statusCode"] == 400 and "_pixpipe/" in problem(reserved)["detail"]


def test_a_decompression_bomb_is_422_too_large(tx: Deployment) -> None:
    tx.upload("bomb.png", png_bomb())
    answer = get(transform_path(SECRET, "w:100", "bomb.png"))
    assert answer["statusCode"] == 422
    assert problem(answer)["kind"] == "too_large"
    assert cached(tx) == {}


def test_an_imgproxy_url_through_the_same_handler(tx: Deployment) -> None:
    tx.upload(SPACED, jpeg(photo(1200, 800)))
    escaped = quote(f"/rs:fit:300:300/plain/local:///{SPACED}@webp", safe="/:@,%")
    (pair,) = imgproxy.hex_pairs([IMGPROXY_KEY], [IMGPROXY_SALT])
    answer = get(f"/imgproxy/{imgproxy.sign(*pair, escaped)}{escaped}")
    assert answer["statusCode"] == 200, answer
    assert answer["headers"]["content-type"] == "image/webp"
    assert size_of(body(answer)) == (300, 200)
    tampered = get(f"/imgproxy/{imgproxy.sign(*pair, escaped)}{escaped.replace('300', '301')}")
    assert tampered["statusCode"] == 403 and "imgproxy" in problem(tampered)["detail"]


def test_a_thumbor_url_through_the_same_handler(tx: Deployment) -> None:
    tx.upload(SPACED, jpeg(photo(1200, 800)))
    escaped = quote(f"300x200/filters:format(png)/{SPACED}", safe="/:(),")
    answer = get(f"/thumbor/{thumbor.sign(THUMBOR_KEY, escaped)}/{escaped}")
    assert answer["statusCode"] == 200, answer
    assert answer["headers"]["content-type"] == "image/png"
    assert size_of(body(answer)) == (300, 200)
    unsafe = get(f"/thumbor/unsafe/{escaped}")
    assert unsafe["statusCode"] == 403 and "allow_unsafe" in problem(unsafe)["detail"]


def test_a_large_compatible_result_is_redirected_too(tx: Deployment) -> None:
    tx.upload(SPACED, jpeg(photo(2400, 1800)))
    escaped = quote(f"/f:png/plain/local:///{SPACED}", safe="/:@,%")
    (pair,) = imgproxy.hex_pairs([IMGPROXY_KEY], [IMGPROXY_SALT])
    answer = get(f"/imgproxy/{imgproxy.sign(*pair, escaped)}{escaped}")
    assert cached(tx)[redirected_key(answer)] > INLINE_MAX


# ---- the template ----------------------------------------------------------------------------


def test_the_template_routes_transforms_to_the_function_and_results_to_the_cache() -> None:
    resources = _template()["Resources"]
    function = resources["TransformFunction"]["Properties"]
    assert function["Handler"] == "pixpipe.aws.transform_handler"
    assert function["FunctionUrlConfig"]["AuthType"] == "AWS_IAM"  # CloudFront only (OAC)
    variables = function["Environment"]["Variables"]
    assert variables["PIXPIPE_STORES__CACHE"] == {"Fn::Sub": "s3://${CacheBucket}/cache"}
    assert variables["PIXPIPE_AWS__CACHE_URL"] == "/cache"  # = the cache/* behaviour below
    secret = variables["PIXPIPE_API__SIGNING_SECRET"]["Fn::If"][1]
    assert _template()["Parameters"][secret["Ref"]]["NoEcho"] is True
    # The function reads originals and reads/writes results, nothing else.
    granted = {s["Sid"]: s for s in function["Policies"][0]["Statement"]}
    assert granted["ReadOriginals"]["Action"] == "s3:GetObject"
    assert set(granted["KeepResults"]["Action"]) >= {"s3:GetObject", "s3:PutObject"}
    rules = resources["CacheBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    assert rules[0]["Status"] == "Enabled" and "ExpirationInDays" in rules[0]
    # CloudFront: the function behind an OAC for Lambda, the results behind the S3 one.
    config = resources["Distribution"]["Properties"]["DistributionConfig"]
    access = {o["Id"]: o["OriginAccessControlId"]["Fn::GetAtt"][0] for o in config["Origins"]}
    oac = resources[access["transforms"]]["Properties"]["OriginAccessControlConfig"]
    assert oac["OriginAccessControlOriginType"] == "lambda"
    assert access["cache"] == access["originals"]
    routes = {b["PathPattern"]: b for b in config["CacheBehaviors"]}
    for pattern in ("t/*", "imgproxy/*", "thumbor/*"):
        assert routes[pattern]["TargetOriginId"] == "transforms"
        policy = resources[routes[pattern]["CachePolicyId"]["Ref"]]["Properties"]
        keyed = policy["CachePolicyConfig"]["ParametersInCacheKeyAndForwardedToOrigin"]
        assert "Accept" in keyed["HeadersConfig"]["Headers"]  # f:auto
    assert routes["cache/*"]["TargetOriginId"] == "cache"
    # Only this distribution may invoke the function's URL.
    permissions = _of_type(resources, "AWS::Lambda::Permission").values()
    by_url = [p["Properties"] for p in permissions
              if p["Properties"]["Action"] == "lambda:InvokeFunctionUrl"]  # fmt: skip
    assert [(p["Principal"], p["FunctionUrlAuthType"]) for p in by_url] == [
        ("cloudfront.amazonaws.com", "AWS_IAM")
    ]
    assert "distribution/${Distribution}" in by_url[0]["SourceArn"]["Fn::Sub"]
    reads = resources["CacheBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
    assert reads["Principal"] == {"Service": "cloudfront.amazonaws.com"}
    assert reads["Resource"] == {"Fn::Sub": "${CacheBucket.Arn}/cache/*"}


# ---- the Lambda package ----------------------------------------------------------------------

BARE = """
import base64, json, os, sys
package, data = sys.argv[1], sys.argv[2]
sys.path.insert(0, package)
for name in [n for n in os.environ if n.startswith(("PIXPIPE_", "AWS_", "POWERTOOLS_"))]:
    del os.environ[name]
for store in ("originals", "variants", "backup", "quarantine", "cache"):
    os.environ[f"PIXPIPE_STORES__{store.upper()}"] = f"file://{data}/{store}"
os.environ.update(PIXPIPE_DATA_DIR=data, PIXPIPE_API__SIGNING_SECRET="s",
                  POWERTOOLS_METRICS_NAMESPACE="pixpipe", POWERTOOLS_LOG_LEVEL="WARNING")
import pyvips
from pixpipe.aws import transform_handler
from pixpipe.http.signing import transform_path
os.makedirs(f"{data}/originals/smoke")
pyvips.Image.xyz(1200, 800).bandjoin(64).write_to_file(f"{data}/originals/smoke/IMG 1.jpg")
event = json.loads(sys.argv[3])
event["rawPath"] = transform_path("s", "w:300/f:webp", "smoke/IMG 1.jpg")
answer = transform_handler(event, type("Context", (), {
    "function_name": "smoke", "function_version": "1", "memory_limit_in_mb": 2048,
    "invoked_function_arn": "arn:aws:lambda:us-east-1:123456789012:function:smoke",
    "aws_request_id": "0", "get_remaining_time_in_millis": lambda self: 30000})())
image = pyvips.Image.new_from_buffer(base64.b64decode(answer["body"]), "")
outside = sorted(n for n, m in list(sys.modules.items()) if getattr(m, "__file__", None)
                 and not m.__file__.startswith((package, sys.base_prefix)))
print(json.dumps({"status": answer["statusCode"], "size": [image.width, image.height],
                  "outside": outside}))
"""


def test_the_transform_handler_runs_from_the_lambda_package(tmp_path: Path) -> None:
    """The zip `make lambda-package` builds (this machine's architecture), unpacked and run by
    a bare interpreter of the Lambda's Python (-I -S): Mangum and FastAPI are in it, and the
    handler answers a Function URL event from it alone."""
    package = _package_module()
    arch = package.host_arch()
    python = package.find_python(package.PYTHON)
    if arch is None or python is None:
        pytest.skip(f"needs python{package.PYTHON} on an x86_64 or arm64 machine")
    build = subprocess.run(
        [sys.executable, str(PACKAGE_SCRIPT), "--arch", arch, "--default", arch, "--no-smoke",
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout + build.stderr
    with zipfile.ZipFile(tmp_path / "pixpipe-lambda.zip") as archive:
        names = set(archive.namelist())
    assert {"pixpipe/aws/transforms.py", "mangum/__init__.py", "fastapi/__init__.py"} <= names
    assert not any(n.startswith(("uvicorn/", "pebble/", "matplotlib/", "boto3/")) for n in names)
    event = json.dumps(url_event("/"))
    run = subprocess.run([python, "-I", "-S", "-c", BARE, str(tmp_path / arch),
                          str(tmp_path / "data"), event],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result == {"status": 200, "size": [300, 200], "outside": []}
