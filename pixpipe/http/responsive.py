"""Responsive images: ``GET /v1/images/{key}/srcset`` gives an ``<img>`` its ``src``,
``srcset`` and ``sizes``, from the recipe's inside-fit variants (their versioned, immutable
URLs) or, with ``?widths=``, from signed on-the-fly transforms at those widths. Transforms also
take the client's hints themselves: ``w:auto`` and ``dpr:auto`` (``http/options.py``)."""

from __future__ import annotations

import re
from collections import Counter
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request

from ..pipeline.runtime import Runtime
from ..storage import check_original_key
from .api import NOT_FOUND, base_url, variant_path
from .models import Srcset
from .options import BadOptions, parse_options
from .signing import transform_path

router = APIRouter(tags=["images"])
_WIDTHS = re.compile(r"^[0-9]{1,5}(,[0-9]{1,5}){0,19}$")


@router.get("/v1/images/{key:path}/srcset", response_model=Srcset, responses=NOT_FOUND)
async def srcset(
    request: Request, key: str,
    sizes: Annotated[str, Query(max_length=500, description="The <img sizes> to use.")] = "100vw",
    widths: Annotated[str | None, Query(description="Transform widths, e.g. 320,640,1280.")] = None,
    options: Annotated[str, Query(description="Transform options besides w, e.g. f:auto.")] = "",
) -> dict[str, Any]:  # fmt: skip
    """``src``/``srcset``/``sizes`` for one original: its inside-fit variants (once ``done``), or
    signed transforms at ``widths`` (any time: they render on first request)."""
    rt: Runtime = request.app.state.rt
    check_original_key(key)
    base = base_url(request)
    if widths is not None:
        return _transforms(request, key, widths, options, sizes)
    state = await rt.states.get(key)
    if state is None or state.state != "done":
        raise HTTPException(404, f"no variants of {key!r} yet (state: "
                                 f"{state.state if state else 'unknown'})")  # fmt: skip
    inside = {v.name for v in rt.recipe if v.fit == "inside"}
    found = [info for name, info in state.variants.items() if name in inside]
    if not found:
        raise HTTPException(404, "the recipe has no inside-fit variants (try ?widths=)")
    fmt = Counter(info.format for info in found).most_common(1)[0][0]
    chosen = sorted((i for i in found if i.format == fmt), key=lambda i: i.width)
    entries = {i.width: f"{base}{variant_path(i.key, i.version)}" for i in chosen}
    return {
        "src": entries[chosen[len(chosen) // 2].width],
        "srcset": ", ".join(f"{url} {width}w" for width, url in entries.items()),
        "sizes": sizes,
    }


def _transforms(
    request: Request, key: str, widths: str, options: str, sizes: str
) -> dict[str, Any]:
    if not _WIDTHS.match(widths) or not any(int(w) for w in widths.split(",")):
        raise HTTPException(400, "widths must be up to 20 numbers, e.g. 320,640,1280")
    try:
        extra = parse_options(options)
    except BadOptions as exc:
        raise HTTPException(400, str(exc)) from None
    if extra.width is not None or extra.width_hint:
        raise HTTPException(400, "the widths come from ?widths=: leave w out of options")
    secret = request.app.state.secret
    base = base_url(request)
    ordered = sorted({int(w) for w in widths.split(",") if int(w) > 0})
    urls = {w: base + transform_path(secret, _with_width(extra.path(), w), key) for w in ordered}
    return {
        "src": urls[ordered[len(ordered) // 2]],
        "srcset": ", ".join(f"{url} {w}w" for w, url in urls.items()),
        "sizes": sizes,
    }


def _with_width(options: str, width: int) -> str:
    return "/".join(p for p in (f"w:{width}", options) if p)


__all__ = ["router"]
