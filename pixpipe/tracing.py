"""Tracing (OpenTelemetry): one trace per image, from the upload through the bus to the
worker's fetch, render and put, the backup and the webhook.

A span begins where its work does, each with a one-line call: ``request_span`` (an upload,
``http/uploads.py``), ``publishing`` (every publish, ``bus/topology.py``: the W3C trace
context goes into the message headers beside ``Nats-Msg-Id``), ``consumed`` (the one pull
loop, ``bus/consumer.py``: a span named after the consumer, the child of its publisher's),
``within`` and ``span`` (the job's steps, a webhook). Keyword attributes are ``pixpipe.*``.

Only the OpenTelemetry API is imported here, and without a tracer provider each call is a
type check and nothing more (no span, no header). ``configured`` installs one (the SDK: the
``tracing`` extra) for a process's life when the standard ``OTEL_*`` variables ask for an
exporter, and flushes it at the end; when they do not, the SDK is never imported.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Awaitable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry import trace
from opentelemetry.trace import INVALID_SPAN, SpanKind, Status, StatusCode

from .logs import log, message_key

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from nats.aio.msg import Msg
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span

T = TypeVar("T")
CLIENT = SpanKind.CLIENT  # an outgoing request (a webhook)
ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
_TOKEN = re.compile(r"(^|&)(token=)[^&]*")
_OFF = contextlib.nullcontext(INVALID_SPAN)  # every span while tracing is off (reusable)


def on() -> bool:
    """A tracer provider is installed (``configured``'s, or a test's)."""
    provider = trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


_kept: list[tuple[trace.TracerProvider, trace.Tracer]] = []


def tracer() -> trace.Tracer:
    """pixpipe's tracer, from the provider installed now (a test may install another)."""
    provider = trace.get_tracer_provider()
    if not _kept or _kept[0][0] is not provider:
        _kept[:] = [(provider, provider.get_tracer("pixpipe"))]
    return _kept[0][1]


def span(
    name: str, *, kind: SpanKind = SpanKind.INTERNAL, remote: Mapping[str, str] | None = None,
    attributes: Mapping[str, Any] | None = None, **pixpipe: Any,
) -> AbstractContextManager[Span]:  # fmt: skip
    """A span around the block: the current span's child or, given ``remote`` (headers with
    W3C trace context), the child of the span they name. An error leaving the block is
    recorded on it. Keywords are ``pixpipe.*`` attributes; ``None`` values are left out."""
    if not on():
        return _OFF
    named = {**(attributes or {}), **{f"pixpipe.{k}": v for k, v in pixpipe.items()}}
    parent = _extract(remote) if remote is not None else None
    attrs = {k: v for k, v in named.items() if v is not None}
    return tracer().start_as_current_span(name, parent, kind, attrs)


async def within(name: str, work: Awaitable[T], **pixpipe: Any) -> T:
    """``await work`` in a span of its own (``pixpipe.*`` attributes as for ``span``)."""
    if not on():
        return await work
    with span(name, **pixpipe):
        return await work


def note(**pixpipe: Any) -> None:
    """Add ``pixpipe.*`` attributes to the current span (``None`` values left out)."""
    current = trace.get_current_span()
    if current.is_recording():
        current.set_attributes({f"pixpipe.{k}": v for k, v in pixpipe.items() if v is not None})


def failed(exc: BaseException) -> None:
    """Mark the current span failed by ``exc`` (an error that is handled, not raised on)."""
    current = trace.get_current_span()
    if current.is_recording():
        current.record_exception(exc)
        current.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))


def inject(headers: dict[str, str]) -> dict[str, str]:
    """``headers``, with the current span's ``traceparent`` (and ``tracestate``) added."""
    if on():
        from opentelemetry import propagate

        propagate.inject(headers)
    return headers


def _extract(headers: Mapping[str, str]) -> Context:
    from opentelemetry import propagate

    return propagate.extract(headers)


def request_span(
    name: str, headers: Mapping[str, str], **pixpipe: Any
) -> AbstractContextManager[Span]:
    """The span of an HTTP request's work: the child of the server span FastAPI makes (its
    own telemetry, whenever a tracer provider is installed; it continues the caller's
    ``traceparent``), or else the server span itself, continuing the caller's trace."""
    if not on() or trace.get_current_span().get_span_context().is_valid:
        return span(name, **pixpipe)
    return span(name, kind=SpanKind.SERVER, remote=headers, **pixpipe)


@contextlib.contextmanager
def publishing(
    subject: str, msg_id: str | None, payload: Mapping[str, Any]
) -> Iterator[dict[str, str] | None]:
    """A producer span ``publish {subject}`` (without ``pixpipe.``) around the block, which
    gets the message's headers: ``Nats-Msg-Id`` and the span's trace context (``None``:
    no headers)."""
    headers = {"Nats-Msg-Id": msg_id} if msg_id else {}
    if not on():
        yield headers or None
        return
    messaging = {"messaging.system": "nats", "messaging.destination.name": subject,
                 "messaging.message.id": msg_id}  # fmt: skip
    with span(f"publish {subject.removeprefix('pixpipe.')}", kind=SpanKind.PRODUCER,
              attributes=messaging, key=payload.get("key"), bytes=payload.get("size")):  # fmt: skip
        yield inject(headers)


def consumed(consumer: str, msg: Msg) -> AbstractContextManager[Span]:
    """The span of one delivery to ``consumer``, named after it: the child of the span that
    published the message (from its headers), with its image key and delivery count."""
    if not on():
        return _OFF
    messaging = {"messaging.system": "nats", "messaging.destination.name": msg.subject,
                 "messaging.consumer.group.name": consumer}  # fmt: skip
    return span(consumer, kind=SpanKind.CONSUMER, remote=msg.headers or {}, attributes=messaging,
                key=message_key(msg), delivery=msg.metadata.num_delivered)  # fmt: skip


# --- a process's tracer provider, from the OTEL_* variables ------------------------------


def exporters_asked(env: Mapping[str, str] = os.environ) -> list[str]:
    """The span exporters the environment asks for: ``OTEL_TRACES_EXPORTER``'s names, else
    ``otlp`` when an OTLP endpoint is set; none when unset, ``none`` or ``OTEL_SDK_DISABLED``."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",")]
    if any(names):
        return [n for n in names if n and n != "none"]
    return ["otlp"] if any(env.get(name) for name in ENDPOINTS) else []


@contextlib.contextmanager
def configured(service: str) -> Iterator[bool]:
    """Spans exported as the ``OTEL_*`` variables say while the block runs, flushed at its
    end; ``service`` is the ``service.name`` unless ``OTEL_SERVICE_NAME`` says otherwise.
    Yields whether tracing is on; without an exporter asked for, nothing is even imported."""
    names = exporters_asked()
    provider = _installed(service, names) if names else None
    try:
        yield provider is not None
    finally:
        if provider is not None:
            provider.shutdown()  # the batch processors export what they still hold


def _installed(service: str, names: list[str]) -> TracerProvider | None:
    """The provider for ``names``, made the global one; ``None`` (and a warning, tracing off)
    if an exporter is not installed: telemetry never stops pixpipe from starting."""
    try:
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        processors = [BatchSpanProcessor(_exporter(name)) for name in names]
    except ImportError:
        log.warning("tracing is off: the OTEL_* variables ask for traces, but the OpenTelemetry "
                    "SDK is not installed (pip install 'pixpipe[tracing]')")  # fmt: skip
        return None
    except LookupError as exc:
        log.warning("tracing is off: %s", exc)
        return None
    provider = provider_for(service, processors)
    trace.set_tracer_provider(provider)
    log.info("tracing: spans of %s exported by %s", service, ", ".join(names))
    return provider


def _exporter(name: str) -> SpanExporter:
    """The exporter an ``OTEL_TRACES_EXPORTER`` name stands for (``otlp``: OTLP over HTTP
    unless the protocol variables say ``grpc``), from the exporters' entry points."""
    from importlib.metadata import entry_points

    if name == "otlp":
        protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
            "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
        )
        name = "otlp_proto_grpc" if protocol.strip() == "grpc" else "otlp_proto_http"
    found = list(entry_points(group="opentelemetry_traces_exporter", name=name))
    if not found:
        raise LookupError(f"no span exporter {name!r} is installed (pixpipe[tracing] has "
                          "otlp over HTTP and console)")  # fmt: skip
    exporter: SpanExporter = found[0].load()()
    return exporter


def provider_for(service: str, processors: Iterable[SpanProcessor]) -> TracerProvider:
    """An SDK tracer provider: ``service`` the ``service.name`` unless ``OTEL_SERVICE_NAME``
    or ``OTEL_RESOURCE_ATTRIBUTES`` name one, the ``OTEL_TRACES_SAMPLER``, upload tokens kept
    out of recorded URLs, then ``processors``."""
    from opentelemetry.sdk.resources import OTELResourceDetector, Resource
    from opentelemetry.sdk.trace import TracerProvider

    resource = Resource.create({"service.name": service}).merge(OTELResourceDetector().detect())
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    provider.add_span_processor(_redacting())
    for processor in processors:
        provider.add_span_processor(processor)
    return provider


def _redacting() -> SpanProcessor:
    from opentelemetry.sdk.trace import SpanProcessor

    class Redacting(SpanProcessor):
        """A local upload URL's token (``PUT /v1/uploads/{key}?…&token=…``) is a secret
        until spent: kept out of the ``url.query`` of FastAPI's server span."""

        def on_start(self, span: Any, parent_context: Context | None = None) -> None:
            query = (span.attributes or {}).get("url.query")
            if isinstance(query, str) and "token=" in query:
                span.set_attribute("url.query", _TOKEN.sub(r"\1\2REDACTED", query))

    return Redacting()


__all__ = [
    "CLIENT",
    "ENDPOINTS",
    "configured",
    "consumed",
    "exporters_asked",
    "failed",
    "inject",
    "note",
    "on",
    "provider_for",
    "publishing",
    "request_span",
    "span",
    "tracer",
    "within",
]
