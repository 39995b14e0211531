"""The Lambda entry points: which event shape arrived, and what to answer. The work itself is
the job core's (``pixpipe.jobs``), with the retry policy of ``jobs/retry.py``:

- SQS batches (the template's shape: S3 → SNS → SQS → Lambda) go through powertools'
  ``BatchProcessor``: only the messages that failed transiently come back in
  ``batchItemFailures`` and return to the queue; the rest are deleted.
- S3 notifications, SNS-wrapped ones and EventBridge "Object Created" events (asynchronous
  invocations) are processed in turn; a transient failure raises at the end so Lambda's own
  retries (and on-failure destination) take over.
- ``{"key": "...", "maxDimension": N}`` resizes one original and answers ``{"resultKey": ...}``.

Each image has ``limits.max_seconds`` (libvips stops a render past it: a transient failure the
first time, ``too_large`` when it repeats) and never more than the invocation has left less
``MARGIN_S``, so one slow file cannot time the whole batch out: the images done stay done,
and what could not be finished or started goes back to its queue (or Lambda's retries).
"""

from __future__ import annotations

import time
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

from ..errors import Kind, PixpipeError
from ..events import ObjectCreated, objects_in
from ..jobs import variants
from ..jobs.backup import back_up
from ..jobs.resize import resize
from ..jobs.retry import Action, as_failure, decide
from ..jobs.variants import Outcome
from ..storage import BadKey, check_original_key
from .runtime import INVOCATION_DEADLINE, Runtime, run, runtime

logger = Logger(service="pixpipe.aws")
metrics = Metrics(namespace="pixpipe", service="pixpipe")

Job = Callable[[Runtime, ObjectCreated, int, "str | None"], Awaitable[Outcome]]
# Seconds kept back at the end of an invocation, for the stores and the answer; an image is
# not started with less than ``MIN_START_S`` left after it.
MARGIN_S = 2.0
MIN_START_S = 1.0


def _is_sqs(event: dict[str, Any]) -> bool:
    records = event.get("Records") or [None]
    return isinstance(records[0], dict) and records[0].get("eventSource") == "aws:sqs"


def _objects(rt: Runtime, payload: Any) -> list[ObjectCreated]:
    """The originals a notification names, as keys of the originals store."""
    return objects_in(rt.stores.originals.url, payload)


def _check_time(context: LambdaContext) -> None:
    """Give the next image what is left of the invocation, or refuse to start it (transient)."""
    left = context.get_remaining_time_in_millis() / 1000 - MARGIN_S
    if left < MIN_START_S:
        raise PixpipeError(Kind.TRANSIENT, f"not started: {left + MARGIN_S:.1f} s were left")
    INVOCATION_DEADLINE.set(time.monotonic() + left)


async def _each(
    rt: Runtime, job: Job, context: LambdaContext, objects: list[ObjectCreated], attempt: int,
    delivery: str | None = None,
) -> list[Outcome]:  # fmt: skip
    """Every object in turn; the first transient error is raised after all were tried."""
    outcomes: list[Outcome] = []
    error: BaseException | None = None
    for created in objects:
        try:
            _check_time(context)
            outcomes.append(await job(rt, created, attempt, delivery))
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


def _dispatch(event: dict[str, Any], context: LambdaContext, job: Job) -> dict[str, Any]:
    rt = runtime()
    if _is_sqs(event):
        processor = BatchProcessor(EventType.SQS, raise_on_entire_batch_failure=False)

        def record_handler(record: SQSRecord) -> list[dict[str, str]]:
            attempt = int(record.attributes.approximate_receive_count or 1)
            objects = _objects(rt, record.body)
            outcomes = run(_each(rt, job, context, objects, attempt, record.message_id))
            return [o.to_dict() for o in outcomes]

        return dict(process_partial_response(event, record_handler, processor))
    outcomes = run(_each(rt, job, context, _objects(rt, event), 1))
    return {"objects": [o.to_dict() for o in outcomes]}


async def _render_job(
    rt: Runtime, created: ObjectCreated, attempt: int, delivery: str | None
) -> Outcome:
    """One original through the job core. Permanent failures are recorded (quarantine) and
    done with; transient ones raise so the delivery is retried, recorded first on the last
    attempt (then on to the dead-letter queue)."""
    try:
        check_original_key(created.key)
    except BadKey as exc:  # can never be stored nor quarantined: report and drop
        logger.error("dropped a notification: %s", exc)
        return Outcome(created.key, "failed", f"bad key: {exc}")
    ctx = rt.context()
    try:
        return await variants.render_variants(ctx, created, attempt, delivery=delivery)
    except Exception as exc:
        error = as_failure(exc)
        if decide(error, attempt, rt.attempts) is Action.GIVE_UP:
            outcome = await variants.fail(ctx, created.key, error, attempt, etag=created.etag)
            if error.kind.permanent:
                return outcome
        raise


async def _backup_job(
    rt: Runtime, created: ObjectCreated, attempt: int, delivery: str | None
) -> Outcome:
    check_original_key(created.key)
    copied = await back_up(rt.stores, created.key)
    return Outcome(created.key, "done", "backed up") if copied else Outcome(
        created.key, "skipped", "already backed up or gone from originals"
    )


def _invoke(event: dict[str, Any]) -> dict[str, Any]:
    """``{"key", "maxDimension"}`` → ``{"resultKey"}``; a bad request or original raises, and
    the caller gets Lambda's ``errorType`` / ``errorMessage``."""
    try:
        if "maxDimension" not in event:
            raise ValueError('a direct invocation needs "key" and "maxDimension"')
        rt = runtime()
        key = check_original_key(event["key"])
        resized = run(resize(rt.stores, rt.render, rt.limits, key, event["maxDimension"]))
    except Exception:
        metrics.add_metric(name="ResizeErrors", unit=MetricUnit.Count, value=1)
        raise
    metrics.add_metric(name="Resizes", unit=MetricUnit.Count, value=1)
    return {"resultKey": resized.key}


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """The variants function: S3 / SNS / SQS / EventBridge notifications, or a direct resize."""
    if isinstance(event, dict) and "key" in event and "Records" not in event:
        _check_time(context)  # this invocation's end, never an earlier one's (a warm container)
        return _invoke(event)
    return _dispatch(event, context, _render_job)


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def backup_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """The backup function: every original named in the notifications copied to backup."""
    return _dispatch(event, context, _backup_job)


__all__ = ["backup_handler", "handler"]
