"""``pixpipe process``: offline batch over files and folders, no bus, no stores.

Each original is rendered in a worker process (pebble): a file that crashes libvips or runs
past ``limits.max_seconds`` costs that process and that file, never the batch.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import Kind, PixpipeError, TimedOut
from .jobs.pool import HARD_STOP_GRACE_S, failure, init_process, start_pool, threads_per_process
from .limits import Limits
from .recipe import Recipe, strip_extension


@dataclass(frozen=True, slots=True)
class Job:
    """One input file and where its outputs go: ``OUT/{variant}/{rel without ext}.{ext}``."""

    path: Path
    rel: str


@dataclass(slots=True)
class Result:
    input: str
    status: str  # "done" | "failed"
    variants: list[dict[str, Any]] = field(default_factory=list)
    kind: str | None = None
    message: str | None = None
    ms: float = 0.0


@dataclass(slots=True)
class Report:
    results: list[Result]
    seconds: float

    @property
    def done(self) -> int:
        return sum(r.status == "done" for r in self.results)

    @property
    def failed(self) -> int:
        return len(self.results) - self.done

    @property
    def failed_by_kind(self) -> dict[str, int]:
        return dict(Counter(r.kind for r in self.results if r.kind))

    @property
    def images_per_s(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "done": self.done,
            "failed": self.failed,
            "failed_by_kind": self.failed_by_kind,
            "seconds": round(self.seconds, 3),
            "images_per_s": round(self.images_per_s, 2),
            "results": [
                {k: v for k, v in asdict(r).items() if v is not None} for r in self.results
            ],
        }


def find_jobs(inputs: Iterable[Path]) -> Iterator[Job]:
    """Files given, and every non-hidden file under the folders given (sorted, recursive)."""
    for item in inputs:
        if item.is_dir():
            for path in sorted(item.rglob("*")):
                rel = path.relative_to(item)
                if path.is_file() and not any(part.startswith(".") for part in rel.parts):
                    yield Job(path, rel.as_posix())
        else:
            yield Job(item, item.name)


# Per-worker state, set once by the pool's initializer instead of pickled with every job.
_STATE: dict[str, Any] = {}


def _init_worker(recipe: Recipe, limits: Limits, out: Path, threads: int) -> None:
    init_process(threads, limits.max_memory_mb)
    _STATE.update(recipe=recipe, limits=limits, out=out)


def _run_job(job: Job) -> Result:
    from .imaging import render

    started = time.perf_counter()
    try:
        try:
            data = job.path.read_bytes()
        except FileNotFoundError:
            raise PixpipeError(Kind.MISSING, f"{job.path} is gone") from None
        except OSError as exc:
            raise PixpipeError(Kind.TRANSIENT, f"cannot read {job.path}: {exc}") from None
        rendered = render(data, _STATE["recipe"], _STATE["limits"])
        stem = strip_extension(job.rel)
        variants = []
        for output in rendered.variants:
            target = _STATE["out"] / output.name / f"{stem}.{output.extension}"
            _write_atomic(target, output.data)
            variants.append({
                "name": output.name, "path": str(target), "width": output.width,
                "height": output.height, "bytes": output.bytes, "format": output.format,
            })  # fmt: skip
        ms = (time.perf_counter() - started) * 1000
        return Result(str(job.path), "done", variants, ms=round(ms, 1))
    except PixpipeError as exc:
        ms = round((time.perf_counter() - started) * 1000, 1)
        exc = exc.final() if isinstance(exc, TimedOut) else exc  # one try: no second chance
        return Result(str(job.path), "failed", kind=exc.kind.value, message=exc.message, ms=ms)


def _write_atomic(target: Path, data: bytes) -> None:
    """Write beside the target, then rename: a reader never sees half a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise PixpipeError(Kind.TRANSIENT, f"cannot write {target}: {exc}") from None


def _outcome(job: Job, future: Future[Result], limits: Limits) -> Result:
    """The job's result, or the failure of the process that ran it."""
    try:
        return future.result()
    except Exception as exc:  # a stall, a crash or a bug costs one file, not the batch
        error = failure(exc, limits)
        if isinstance(error, TimedOut):
            error = error.final()
        return Result(str(job.path), "failed", kind=error.kind.value, message=error.message)


def process(
    jobs: list[Job],
    out: Path,
    recipe: Recipe,
    limits: Limits,
    workers: int | None = None,
    on_result: Callable[[Result], None] | None = None,
) -> Report:
    """Render every job into ``out`` with ``workers`` processes; results in input order."""
    workers = min(max(1, workers or os.cpu_count() or 1), max(1, len(jobs)))
    started = time.perf_counter()
    results: list[Result | None] = [None] * len(jobs)
    initargs = (recipe, limits, out, threads_per_process(workers))
    with start_pool(workers, _init_worker, initargs) as pool:
        futures = {
            pool.schedule(_run_job, args=(job,), timeout=limits.max_seconds + HARD_STOP_GRACE_S): i
            for i, job in enumerate(jobs)
        }
        for future in as_completed(futures):
            index = futures[future]
            result = _outcome(jobs[index], future, limits)
            results[index] = result
            if on_result:
                on_result(result)
    return Report([r for r in results if r is not None], time.perf_counter() - started)

__all__ = [
    "Job",
    "Report",
    "Result",
    "find_jobs",
    "process",
]
