"""Image state and failures: ``GET /v1/images[/{key}]``, ``GET /v1/failures``,
``POST /v1/failures/{key}/retry``, and S3 bucket notifications at ``POST /v1/events/s3``."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response

from ..events import objects_in
from ..jobs.state import STATES
from ..jobs.state import ImageState as ImageDoc
from ..pipeline.ingest import NotFailed, publish_created, retry_failed
from ..pipeline.runtime import Runtime
from ..storage import check_original_key
from .auth import AUTH
from .models import Accepted, Failure, ImageState, Problem, Retrying

router = APIRouter(tags=["images"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": Problem}, 400: {"model": Problem}}


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def variant_path(key: str, version: str | None) -> str:
    """Where a variant is served: versioned (immutable) when its version is known."""
    path = f"/images/{quote(key)}"
    return f"{path}?v={version}" if version else path


def public_state(state: ImageDoc, base: str) -> dict[str, Any]:
    """The state as clients see it: variant URLs, no internal fields."""
    out: dict[str, Any] = {"key": state.key, "state": state.state, "variants": {}}
    for name, info in state.variants.items():
        out["variants"][name] = {
            "url": f"{base}{variant_path(info.key, info.version)}",
            **info.model_dump(include={"width", "height", "bytes", "format", "version"}),
        }
    extras = state.model_dump(mode="json", include={"error", "placeholder", "dominant", "updated"})
    return out | {name: value for name, value in extras.items() if value}


PAGE = {"description": "A page, newest first; ``X-Next-Cursor`` (and ``Link: rel=next``) "
        "names the next one, when there is more."}


@dataclass
class Paging:
    """``?limit=&cursor=`` of a listing, and the response its next-page headers go on."""

    request: Request
    response: Response
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many.")] = 50
    cursor: Annotated[str | None, Query(description="From ``X-Next-Cursor``.")] = None

    def page(self, docs: list[ImageDoc]) -> list[ImageDoc]:
        return _page(self.request, self.response, docs, self.limit, self.cursor)


@router.get(
    "/v1/images", response_model=list[ImageState], response_model_exclude_none=True,
    dependencies=AUTH, responses={200: PAGE, 400: {"model": Problem}, 401: {"model": Problem}},
)  # fmt: skip
async def recent_images(
    request: Request,
    paging: Annotated[Paging, Depends()],
    state: Annotated[str | None, Query(pattern=f"^({'|'.join(STATES)})$")] = None,
) -> list[dict[str, Any]]:
    """Recent originals, newest first (the dashboard's gallery); needs the API key."""
    rt: Runtime = request.app.state.rt
    docs = [d async for d in rt.states.all() if state is None or d.state == state]
    return [public_state(d, base_url(request)) for d in paging.page(docs)]


def _page(
    request: Request, response: Response, docs: list[ImageDoc], limit: int, cursor: str | None
) -> list[ImageDoc]:
    """One page of ``docs``, newest first, after ``cursor`` (the last one of the page before:
    its time and key, so a page never repeats one; an image that changes while a client walks
    the pages moves to the front, being newest)."""
    docs.sort(key=lambda d: (d.updated.isoformat(), d.key), reverse=True)
    if cursor:
        try:
            after = tuple(json.loads(base64.urlsafe_b64decode(cursor + "==")))
        except (ValueError, TypeError):
            raise HTTPException(400, f"cursor {cursor!r} is not one this API gave") from None
        docs = [d for d in docs if (d.updated.isoformat(), d.key) < after]
    page = docs[:limit]
    if len(docs) > limit:
        last = json.dumps([page[-1].updated.isoformat(), page[-1].key]).encode()
        token = base64.urlsafe_b64encode(last).decode().rstrip("=")
        response.headers["X-Next-Cursor"] = token
        response.headers["Link"] = f'<{request.url.include_query_params(cursor=token)}>; rel="next"'
    return page


@router.get(
    "/v1/images/{key:path}", response_model=ImageState, response_model_exclude_none=True,
    responses=NOT_FOUND,
)  # fmt: skip
async def image_state(request: Request, key: str) -> dict[str, Any]:
    """The state of one original and its variants."""
    state = await request.app.state.rt.states.get(check_original_key(key))
    if state is None:
        raise HTTPException(404, f"no image {key!r}")
    return public_state(state, base_url(request))


@router.get(
    "/v1/failures", response_model=list[Failure], tags=["failures"], dependencies=AUTH,
    responses={200: PAGE, 400: {"model": Problem}, 401: {"model": Problem}},
)  # fmt: skip
async def failures(request: Request, paging: Annotated[Paging, Depends()]) -> list[dict[str, Any]]:
    """Originals that failed, with the kind and message of their failure; needs the API key."""
    docs = await request.app.state.rt.states.failed()
    return [
        {"key": s.key, "kind": s.error.kind if s.error else "transient",
         "message": s.error.message if s.error else "", "attempts": s.attempts,
         "time": s.updated}
        for s in paging.page(docs)
    ]  # fmt: skip


@router.post(
    "/v1/failures/{key:path}/retry", status_code=202, dependencies=AUTH, response_model=Retrying,
    tags=["failures"], responses={**NOT_FOUND, 409: {"model": Problem}, 401: {"model": Problem}},
)  # fmt: skip
async def retry_failure(request: Request, key: str) -> dict[str, Any]:
    """Put a failed original back in line (out of quarantine first, if it was moved there)."""
    try:
        return await retry_failed(request.app.state.rt, check_original_key(key))
    except NotFailed as exc:
        raise HTTPException(409, str(exc)) from None


@router.post(
    "/v1/events/s3", status_code=202, dependencies=AUTH, response_model=Accepted,
    tags=["ingest"], responses={400: {"model": Problem}, 401: {"model": Problem}},
)  # fmt: skip
async def s3_events(request: Request) -> dict[str, Any]:
    """An S3/MinIO bucket notification (or an SNS/SQS/EventBridge-wrapped one)."""
    rt = request.app.state.rt
    try:
        events = objects_in(rt.stores.originals.url, await request.body())
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise HTTPException(400, f"not an S3 notification: {exc!r}") from None
    for event in events:
        check_original_key(event.key)
    for event in events:
        await publish_created(rt, event)
    return {"accepted": [e.key for e in events]}


__all__ = ["base_url", "public_state", "router", "variant_path"]
