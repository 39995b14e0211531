"""Tracing (issue #16): one upload is one trace, from the API through the bus to the worker's
fetch, render and put, the backup and the webhook; across real ``pixpipe api`` and ``pixpipe
worker`` processes too (their spans sent over OTLP/HTTP to a receiver of the test's own); and
nothing at all, not even the SDK imported, when the ``OTEL_*`` variables are unset."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.util._once import Once

from pixpipe import tracing
from tests import images
from tests.pipeline import API_KEY, WebhookReceiver, eventually
from tests.test_http_harness import AUTH, Live, free_port, live_pixpipe

pytestmark = [pytest.mark.timeout(180), pytest.mark.xdist_group("tracing")]
JPEG = images.jpeg(images.photo(400, 300))
# What a client that traces sends: its trace id and the id of its span around the request.
CLIENT_TRACE, CLIENT_SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
# Each span of one upload and its parent (the webhook's notify span comes from image.processed).
TREE = {
    "publish object.created": "upload",
    "variants": "publish object.created",
    "backup": "publish object.created",
    "fetch original": "variants",
    "render": "variants",
    "put variants": "variants",
    "state write": "variants",
    "publish image.processed": "variants",
    "notify": "publish image.processed",
    "webhook": "notify",
}


def _until(check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.1)
    raise AssertionError(f"not in {timeout} s: {check()!r}")


# --- 1. in one process: the SDK's in-memory exporter ----------------------------------------


@pytest.fixture(scope="module")
def exporter() -> Iterator[InMemorySpanExporter]:
    """Every span of this process, kept in memory; tracing off again after the module."""
    assert not tracing.on(), "another test left a tracer provider installed"
    exporter = InMemorySpanExporter()
    provider = tracing.provider_for("pixpipe-test", [SimpleSpanProcessor(exporter)])
    trace.set_tracer_provider(provider)
    yield exporter
    provider.shutdown()
    # What OpenTelemetry's own tests do to reset the API's set-once global: later tests in
    # this process run untraced, as they always have.
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    hook = WebhookReceiver()
    yield hook
    hook.close()


@pytest.fixture(scope="module")
def live(
    exporter: InMemorySpanExporter, receiver: WebhookReceiver,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Live]:  # fmt: skip
    webhooks = [{"url": receiver.url, "secret": "s3cret"}]
    with live_pixpipe(tmp_path_factory, webhooks=webhooks) as pixpipe:
        yield pixpipe


def _in_trace(exporter: InMemorySpanExporter, trace_id: int) -> dict[str, ReadableSpan]:
    spans = [s for s in exporter.get_finished_spans() if s.context.trace_id == trace_id]
    return {s.name: s for s in spans}


def _tree(spans: dict[str, ReadableSpan]) -> str:
    """The spans as an indented tree (for failure messages and the report)."""
    children: dict[int | None, list[ReadableSpan]] = {}
    ids = {s.context.span_id for s in spans.values()}
    for s in sorted(spans.values(), key=lambda s: s.start_time or 0):
        parent = s.parent.span_id if s.parent and s.parent.span_id in ids else None
        children.setdefault(parent, []).append(s)

    def lines(parent: int | None, depth: int) -> Iterator[str]:
        for s in children.get(parent, []):
            ms = ((s.end_time or 0) - (s.start_time or 0)) / 1e6
            yield f"{'  ' * depth}{s.name}  ({s.kind.name.lower()}, {ms:.1f} ms)"
            yield from lines(s.context.span_id, depth + 1)

    return "\n".join(lines(None, 0))


def test_one_upload_is_one_trace_from_the_callers_span_to_the_webhook(
    live: Live, exporter: InMemorySpanExporter, receiver: WebhookReceiver
) -> None:
    key = "traced/one.jpg"
    caller = {"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"}
    response = live.http.post("/v1/images", params={"key": key}, content=JPEG,
                              headers={**AUTH, **caller})  # fmt: skip
    assert response.status_code == 201, response.text
    trace_id = int(CLIENT_TRACE, 16)
    spans = _until(lambda: (s := _in_trace(exporter, trace_id)) and set(TREE) <= set(s) and s)
    tree = _tree(spans)
    for name, parent in TREE.items():
        assert spans[name].parent is not None, f"{name} has no parent:\n{tree}"
        assert spans[name].parent.span_id == spans[parent].context.span_id, f"{name}:\n{tree}"
    # Every pixpipe span about this image is in this one trace, but for the folder watcher's
    # announcement of the same file, which the bus drops as a duplicate (a trace of its own).
    about = [s for s in exporter.get_finished_spans() if s.attributes.get("pixpipe.key") == key]
    assert {s.context.trace_id for s in about if not s.attributes.get("pixpipe.duplicate")} == {
        trace_id}, tree  # fmt: skip
    assert spans["publish object.created"].attributes["pixpipe.duplicate"] is False
    # Up the upload's parents to the caller's span, given as a traceparent header.
    top = spans["upload"]
    while top.parent is not None and not top.parent.is_remote:
        top = next(s for s in spans.values() if s.context.span_id == top.parent.span_id)
    assert top.parent is not None and top.parent.span_id == int(CLIENT_SPAN, 16), tree
    assert top.kind is SpanKind.SERVER, tree

    variants, webhook = spans["variants"], spans["webhook"]
    assert (variants.kind, spans["publish object.created"].kind) == (
        SpanKind.CONSUMER, SpanKind.PRODUCER)  # fmt: skip
    assert variants.attributes["pixpipe.key"] == key
    assert variants.attributes["pixpipe.delivery"] == 1
    assert spans["fetch original"].attributes["pixpipe.bytes"] == len(JPEG)
    put = spans["put variants"].attributes
    assert put["pixpipe.variants"] == len(live.settings.recipe) and put["pixpipe.bytes"] > 0
    assert webhook.kind is SpanKind.CLIENT
    assert webhook.attributes["server.address"] == "127.0.0.1"
    assert webhook.attributes["http.response.status_code"] == 204
    # The receiver can go on with the trace: its request names the webhook span.
    sent = [h for h, body in receiver.calls if json.loads(body)["key"] == key]
    assert sent[0]["traceparent"] == f"00-{CLIENT_TRACE}-{webhook.context.span_id:016x}-01"


def test_an_upload_without_a_callers_trace_starts_one_at_the_api(
    live: Live, exporter: InMemorySpanExporter
) -> None:
    key = "traced/root.jpg"
    assert live.upload(key, JPEG).status_code == 201

    def upload() -> ReadableSpan | None:
        found = [s for s in exporter.get_finished_spans()
                 if s.name == "upload" and s.attributes.get("pixpipe.key") == key]  # fmt: skip
        return found[0] if found else None

    trace_id = _until(upload).context.trace_id
    spans = _until(lambda: (s := _in_trace(exporter, trace_id)) and "webhook" in s and s)
    assert set(TREE) <= set(spans), _tree(spans)
    roots = [s for s in spans.values() if s.parent is None]
    assert len(roots) == 1 and roots[0].kind is SpanKind.SERVER, _tree(spans)


def test_a_failed_image_leaves_failed_spans_and_its_failure_in_the_trace(
    live: Live, exporter: InMemorySpanExporter
) -> None:
    key = "traced/bomb.png"
    assert live.upload(key, images.png_bomb()).status_code == 201
    assert live.wait(key)["state"] == "failed"

    def variants() -> ReadableSpan | None:
        found = [s for s in exporter.get_finished_spans()
                 if s.name == "variants" and s.attributes.get("pixpipe.key") == key]  # fmt: skip
        return found[0] if found else None

    delivery = _until(variants)
    spans = _until(lambda: (s := _in_trace(exporter, delivery.context.trace_id))
                   and "publish image.failed" in s and s)  # fmt: skip
    tree = _tree(spans)
    assert delivery.status.status_code is StatusCode.ERROR, tree
    assert [e.name for e in delivery.events] == ["exception"], tree
    assert spans["render"].status.status_code is StatusCode.ERROR, tree
    assert spans["publish image.failed"].parent.span_id == delivery.context.span_id, tree
    assert "put variants" not in spans, tree


# --- 2. across processes: pixpipe api and pixpipe worker, over OTLP/HTTP --------------------


def attributes(span: Any) -> dict[str, Any]:
    """An OTLP span's attributes as Python values."""
    return {a.key: getattr(a.value, a.value.WhichOneof("value")) for a in span.attributes}


class OtlpReceiver:
    """A tiny OTLP/HTTP collector: the spans of the ``ExportTraceServiceRequest``s POSTed to
    ``/v1/traces``, each as ``(service.name, span)``."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path == "/v1/traces":
                    receiver.add(ExportTraceServiceRequest.FromString(body))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add(self, request: ExportTraceServiceRequest) -> None:
        for resource_spans in request.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope in resource_spans.scope_spans:
                self.spans.extend((attributes["service.name"], s) for s in scope.spans)

    def about(self, key: str) -> list[tuple[str, Any]]:
        """The spans about the image ``key``, but for announcements the bus dropped as
        duplicates (the folder watcher sees every upload's file too: a trace of its own)."""
        found = [(svc, s, attributes(s)) for svc, s in list(self.spans)]
        return [(svc, s) for svc, s, a in found
                if a.get("pixpipe.key") == key and not a.get("pixpipe.duplicate")]  # fmt: skip

    def named(self, service: str, name: str, key: str) -> Any:
        """The span ``name`` of ``service`` about the image ``key``, once it has come."""
        return next((s for svc, s in self.about(key) if (svc, s.name) == (service, name)), None)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def otlp() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    yield receiver
    receiver.close()


async def test_the_api_and_worker_processes_send_one_trace_per_upload(
    tmp_path: Path, nats_server_private: Any, spawn: Any, otlp: OtlpReceiver
) -> None:
    env = {
        "PIXPIPE_DATA_DIR": str(tmp_path / "data"), "PIXPIPE_BUS__URL": nats_server_private.url,
        "PIXPIPE_API__KEYS": API_KEY, "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.url,
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }  # fmt: skip
    port = free_port()
    # The API exports only when stopped: its spans arrive through the flush at shutdown.
    api = spawn("api", "--port", port, env={**env, "OTEL_BSP_SCHEDULE_DELAY": "600000"})
    worker = spawn("worker", "--workers", "1", env=env)
    await api.wait_for("pixpipe is up")
    await worker.wait_for("worker ready")
    key = "traced/apart.jpg"
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        response = await http.post("/v1/images", params={"key": key}, content=JPEG, headers=AUTH)
    assert response.status_code == 201, response.text
    await eventually(lambda: otlp.named("pixpipe-worker", "publish image.processed", key), 60)
    assert otlp.named("pixpipe-api", "upload", key) is None, "the API exported before its stop"
    assert (await api.terminate())[0] == 0
    upload = otlp.named("pixpipe-api", "upload", key)
    published = otlp.named("pixpipe-api", "publish object.created", key)
    assert upload is not None and published is not None, "the API's spans were not flushed"
    variants = otlp.named("pixpipe-worker", "variants", key)
    assert variants.parent_span_id == published.span_id  # a span of the other process
    assert published.parent_span_id == upload.span_id
    about = otlp.about(key)
    assert {svc for svc, _ in about} == {"pixpipe-api", "pixpipe-worker"}
    assert {s.trace_id for _, s in about} == {upload.trace_id}, "more than one trace"
    names = {(svc, s.name) for svc, s in otlp.spans if s.trace_id == upload.trace_id}
    assert {("pixpipe-worker", n) for n in ("fetch original", "render", "put variants")} <= names


# --- 3. off when unset ----------------------------------------------------------------------

OFF_SCRIPT = """
import asyncio, json, sys
from pathlib import Path
import httpx
from pixpipe import bus, tracing
from pixpipe.config import Settings
from pixpipe.pipeline.roles import Roles, serve

data, port, jpeg = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]).read_bytes()
settings = Settings(data_dir=data, api={"keys": ["k"]})
seen = {}

async def main():
    stop = asyncio.Event()

    async def ready(rt, url):
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            answer = await http.post("/v1/images", params={"key": "off.jpg"}, content=jpeg,
                                     headers={"Authorization": "Bearer k"})
            assert answer.status_code == 201, answer.text
        while (state := await rt.states.get("off.jpg")) is None or not state.final:
            await asyncio.sleep(0.1)
        created = await rt.js.get_msg(bus.STREAM, 1)
        seen.update(state=state.state, subject=created.subject, headers=created.headers or {})
        stop.set()

    await serve(settings, Roles(True, True, 1, "127.0.0.1", port), stop, ready)

with tracing.configured("pixpipe") as on:  # as `pixpipe up` starts
    asyncio.run(main())
sdk = sorted(m for m in sys.modules if m.startswith(("opentelemetry.sdk", "opentelemetry.exp")))
print("RESULT " + json.dumps({**seen, "on": on, "sdk": sdk}))
"""


@pytest.mark.parametrize("exporter_name", ["", "console"])
def test_without_otel_variables_nothing_is_traced_and_no_sdk_is_imported(
    tmp_path: Path, exporter_name: str
) -> None:
    """Unset: pixpipe up works as before, its messages carry no trace context, and the SDK
    is never imported. ``console`` is the control: the same run with an exporter asked for."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PIXPIPE_"))}
    if exporter_name:
        env["OTEL_TRACES_EXPORTER"] = exporter_name
    (tmp_path / "in.jpg").write_bytes(JPEG)
    args = [str(tmp_path / "data"), str(free_port()), str(tmp_path / "in.jpg")]
    run = subprocess.run([sys.executable, "-c", OFF_SCRIPT, *args], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=150)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    line = next(x for x in run.stdout.splitlines() if x.startswith("RESULT "))
    result = json.loads(line.removeprefix("RESULT "))
    assert (result["state"], result["subject"]) == ("done", "pixpipe.object.created")
    assert result["on"] is bool(exporter_name)
    if exporter_name:
        assert "opentelemetry.sdk.trace" in result["sdk"]
        assert result["headers"]["traceparent"].startswith("00-")
    else:
        assert result["sdk"] == [], "the SDK was imported with tracing off"
        assert set(result["headers"]) == {"Nats-Msg-Id"}, result["headers"]


# --- 4. the settings, and what a span must never hold ---------------------------------------

ENDPOINT = "http://collector:4318"


@pytest.mark.parametrize(
    ("env", "exporters"),
    [
        ({}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{ENDPOINT}/v1/traces"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "console"}, ["console"]),
        ({"OTEL_TRACES_EXPORTER": "otlp, Console"}, ["otlp", "console"]),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, []),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, []),
        ({"OTEL_SERVICE_NAME": "pixpipe-eu"}, []),  # naming a service exports nothing
    ],
)
def test_which_exporters_the_environment_asks_for(env: dict[str, str], exporters: list[str]):
    assert tracing.exporters_asked(env) == exporters


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({}, "pixpipe-api"),
        ({"OTEL_SERVICE_NAME": "images-eu"}, "images-eu"),
        ({"OTEL_RESOURCE_ATTRIBUTES": "service.name=by-attributes,team=media"}, "by-attributes"),
    ],
)
def test_the_service_name_defaults_to_the_role(
    env: dict[str, str], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"):
        monkeypatch.delenv(variable, raising=False)
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    provider = tracing.provider_for("pixpipe-api", [])
    assert provider.resource.attributes["service.name"] == name


def test_a_local_upload_urls_token_never_reaches_a_span() -> None:
    exporter = InMemorySpanExporter()
    provider = tracing.provider_for("pixpipe-api", [SimpleSpanProcessor(exporter)])
    query = "expires=1700000000&length=5&type=image%2Fjpeg&token=s3cr3t-t0ken"
    provider.get_tracer("test").start_span("PUT", attributes={"url.query": query}).end()
    provider.shutdown()
    (recorded,) = exporter.get_finished_spans()
    assert recorded.attributes["url.query"] == (
        "expires=1700000000&length=5&type=image%2Fjpeg&token=REDACTED"
    )
