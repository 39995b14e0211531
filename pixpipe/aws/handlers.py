"""The Lambda entry points: which event shape arrived, and what to answer.

- SQS batches (the template's shape: S3 → SNS → SQS → Lambda) go through powertools'
  ``BatchProcessor``: only the messages that failed transiently come back in
  ``batchItemFailures`` and return to the queue; the rest are deleted.
- S3 notifications, SNS-wrapped ones and EventBridge "Object Created" events (asynchronous
  invocations) are processed in turn; a transient failure raises at the end so Lambda's own
  retries (and on-failure destination) take over.
- ``{"key": "...", "maxDimension": N}`` resizes one original and answers ``{"resultKey": ...}``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from ..events import ObjectCreated, objects_in
from .jobs import Outcome, back_up, handle_created, resize
from .runtime import Runtime, run, runtime

logger = Logger(service="pixpipe.aws")
metrics = Metrics(namespace="pixpipe", service="pixpipe")

Job = Callable[[Runtime, ObjectCreated, int], Awaitable[Outcome]]


def _is_sqs(event: dict[str, Any]) -> bool:
    records = event.get("Records") or [None]
    return isinstance(records[0], dict) and records[0].get("eventSource") == "aws:sqs"


def _objects(rt: Runtime, payload: Any) -> list[ObjectCreated]:
    """The originals a notification names, as keys of the originals store."""
    return objects_in(rt.stores.originals.url, payload)


async def _each(rt: Runtime, job: Job, objects: list[ObjectCreated], attempt: int) -> list[Outcome]:
    """Every object in turn; the first transient error is raised after all were tried."""
    outcomes: list[Outcome] = []
    error: BaseException | None = None
    for created in objects:
        try:
            outcomes.append(await job(rt, created, attempt))
        except Exception as exc:  # transient: the others still get their turn
            logger.exception("will retry %s", created.key)
            error = error or exc
    _count(outcomes)
    if error is not None:
        metrics.add_metric(name="ImagesRetried", unit=MetricUnit.Count, value=1)
        raise error
    return outcomes


def _count(outcomes: list[Outcome]) -> None:
    for state in ("done", "skipped", "failed"):
        value = sum(o.state == state for o in outcomes)
        metrics.add_metric(name=f"Images{state.title()}", unit=MetricUnit.Count, value=value)


def _dispatch(event: dict[str, Any], job: Job) -> dict[str, Any]:
    rt = runtime()
    if _is_sqs(event):
        processor = BatchProcessor(EventType.SQS, raise_on_entire_batch_failure=False)

        def record_handler(record: SQSRecord) -> list[dict[str, str]]:
            attempt = int(record.attributes.approximate_receive_count or 1)
            outcomes = run(_each(rt, job, _objects(rt, record.body), attempt))
            return [o.to_dict() for o in outcomes]

        return dict(process_partial_response(event, record_handler, processor))
    outcomes = run(_each(rt, job, _objects(rt, event), 1))
    return {"objects": [o.to_dict() for o in outcomes]}


async def _render_job(rt: Runtime, created: ObjectCreated, attempt: int) -> Outcome:
    return await handle_created(rt, created, attempt)


async def _backup_job(rt: Runtime, created: ObjectCreated, attempt: int) -> Outcome:
    return await back_up(rt, created.key)


def _invoke(event: dict[str, Any]) -> dict[str, str]:
    """``{"key", "maxDimension"}`` → ``{"resultKey"}``; a bad request or original raises, and
    the caller gets Lambda's ``errorType`` / ``errorMessage``."""
    try:
        if "maxDimension" not in event:
            raise ValueError('a direct invocation needs "key" and "maxDimension"')
        result_key = run(resize(runtime(), event["key"], event["maxDimension"]))
    except Exception:
        metrics.add_metric(name="ResizeErrors", unit=MetricUnit.Count, value=1)
        raise
    metrics.add_metric(name="Resizes", unit=MetricUnit.Count, value=1)
    return {"resultKey": result_key}


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """The variants function: S3 / SNS / SQS / EventBridge notifications, or a direct resize."""
    if isinstance(event, dict) and "key" in event and "Records" not in event:
        return _invoke(event)
    return _dispatch(event, _render_job)


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def backup_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """The backup function: every original named in the notifications copied to backup."""
    return _dispatch(event, _backup_job)


__all__ = ["backup_handler", "handler"]
