"""Run one tool as a child process and measure it: wall time, CPU time and peak RSS.

``os.wait4`` returns the child's resource usage folded with every descendant it reaped, so
``ru_maxrss`` is the peak RSS of the largest single process of the tree (one worker) and
``ru_utime + ru_stime`` the CPU seconds of all of them.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class Measured:
    """What one run of a tool printed (its JSON report) and what it cost."""

    report: dict[str, Any]
    wall_s: float
    cpu_s: float
    peak_rss_mb: float


class ToolFailed(RuntimeError):
    """A tool exited non-zero or printed no JSON report."""


def run(
    argv: Sequence[str],
    stdin: str = "",
    env: Mapping[str, str] | None = None,
    expect_report: bool = True,
) -> Measured:
    """Run ``argv`` to completion; its last stdout line that parses as JSON is the report
    (``{}`` for a tool that prints none, when ``expect_report`` is false)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=out, stderr=err, text=True,
            env=dict(env) if env is not None else None,
        )  # fmt: skip
        assert proc.stdin is not None
        proc.stdin.write(stdin)
        proc.stdin.close()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode not in (0, 1):  # pixpipe exits 1 when any image failed
        raise ToolFailed(f"{argv[0]} exited {proc.returncode}: {stderr[-2000:]}")
    return Measured(
        report=_last_json(stdout, stderr) if expect_report else {},
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        peak_rss_mb=usage.ru_maxrss / 1024,  # Linux reports KiB
    )


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """CPU seconds of ``pid`` and every live descendant, by pid: (command name, seconds).
    Each process's own time plus that of the children it reaped (a render process recycled
    after its tasks), so the sum over the tree counts every process once."""
    found: dict[int, tuple[str, float]] = {}
    pending = [pid]
    while pending:
        here = pending.pop()
        try:
            stat = Path(f"/proc/{here}/stat").read_text()
            threads = list(Path(f"/proc/{here}/task").iterdir())
            children = [int(c) for t in threads for c in (t / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue  # gone meanwhile
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        # utime, stime, cutime, cstime (fields 14-17 of proc(5), counted from 3 here)
        found[here] = (name, sum(int(f) for f in fields[11:15]) / CLOCK_TICKS)
        pending.extend(children)
    return found


def cpu_spent(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
) -> dict[str, float]:
    """CPU seconds spent between two ``tree_cpu`` snapshots, summed by command name."""
    spent: dict[str, float] = {}
    for pid, (name, seconds) in after.items():
        spent[name] = spent.get(name, 0.0) + seconds - before.get(pid, (name, 0.0))[1]
    return spent


def _last_json(stdout: str, stderr: str) -> dict[str, Any]:
    text = stdout.strip()
    try:  # pixpipe prints one indented document
        value = json.loads(text)
        if isinstance(value, dict):
            return value
    except json.JSONDecodeError:
        pass
    for line in reversed(text.splitlines()):
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    raise ToolFailed(f"no JSON report; stdout: {stdout[-500:]!r} stderr: {stderr[-1500:]!r}")
