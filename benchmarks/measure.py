"""Run one tool as a child process and measure it: wall time, CPU time and peak RSS.

``os.wait4`` returns the child's resource usage folded with every descendant it reaped, so
``ru_maxrss`` is the peak RSS of the largest single process of the tree (one worker) and
``ru_utime + ru_stime`` the CPU seconds of all of them.

The tool is not the driver's own child but a tiny launcher's (``python -I -S``, ~10 MB),
which spawns it with the same stdio and environment, waits for it and hands its usage back
as JSON. The driver cannot wait4 the tool itself: ``subprocess`` starts children with vfork,
and on Linux ``exec`` records the RSS high-water mark of the memory it replaces, the
*parent's* after a vfork (a forked copy's is the parent's RSS at the fork), as the child's
``ru_maxrss``. A driver that built the corpus with pyvips in-process (243 MB) thus lent every
tool its 243 MB as a peak (and earlier 45 MB floors of Pillow and ImageMagick were the same).
The launcher takes that inheritance; a tool's floor is now the launcher's own ~10 MB.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCRATCH: list[str] = []  # folders of measured runs, removed when the benchmark exits


@contextlib.contextmanager
def scratch(prefix: str) -> Iterator[str]:
    """A fresh folder for one measured run, left in place until the benchmark exits.

    Not removed after its run: ext4 without a journal (this machine's root) makes every file
    created in the 30 s after a deletion scan past each inode freed then (``recently_deleted``
    in ``perf``), which charged a run with the files of the run before it: 9% of pixpipe's
    CPU in the pipeline benchmark."""
    if not _SCRATCH:
        atexit.register(lambda: [shutil.rmtree(p, ignore_errors=True) for p in _SCRATCH])
    _SCRATCH.append(tempfile.mkdtemp(prefix=prefix))
    yield _SCRATCH[-1]


@dataclass(frozen=True, slots=True)
class Measured:
    """What one run of a tool printed (its JSON report) and what it cost."""

    report: dict[str, Any]
    wall_s: float
    cpu_s: float
    peak_rss_mb: float


class ToolFailed(RuntimeError):
    """A tool exited non-zero or printed no JSON report."""


# Spawns argv[2:] with its stdio and environment, waits for it, writes its usage to fd argv[1].
_LAUNCHER = """
import json, os, sys, time
fd = int(sys.argv[1])
os.set_inheritable(fd, False)
started = time.perf_counter()
try:
    pid = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ)
except OSError as exc:
    os.write(fd, json.dumps({"error": str(exc)}).encode())
    sys.exit()
_, status, usage = os.wait4(pid, 0)
os.write(fd, json.dumps({"exit": os.waitstatus_to_exitcode(status),
                         "wall_s": time.perf_counter() - started,
                         "cpu_s": usage.ru_utime + usage.ru_stime,
                         "maxrss_kib": usage.ru_maxrss}).encode())
"""


def run(
    argv: Sequence[str],
    stdin: str = "",
    env: Mapping[str, str] | None = None,
    expect_report: bool = True,
) -> Measured:
    """Run ``argv`` to completion; its last stdout line that parses as JSON is the report
    (``{}`` for a tool that prints none, when ``expect_report`` is false)."""
    with (
        tempfile.TemporaryFile("w+") as out,
        tempfile.TemporaryFile("w+") as err,
        tempfile.TemporaryFile("w+") as usage,
    ):
        fd = usage.fileno()
        launcher = [sys.executable, "-I", "-S", "-c", _LAUNCHER, str(fd), *argv]
        proc = subprocess.Popen(
            launcher, stdin=subprocess.PIPE, stdout=out, stderr=err, text=True,
            env=dict(env) if env is not None else None, pass_fds=(fd,),
        )  # fmt: skip
        assert proc.stdin is not None
        proc.stdin.write(stdin)
        proc.stdin.close()
        launched = proc.wait()
        out.seek(0)
        err.seek(0)
        usage.seek(0)
        stdout, stderr, spent = out.read(), err.read(), usage.read()
    if launched != 0 or not spent:
        raise ToolFailed(f"the launcher of {argv[0]} exited {launched}: {stderr[-2000:]}")
    tool = json.loads(spent)
    if "error" in tool:
        raise ToolFailed(f"{argv[0]} did not start: {tool['error']}")
    if tool["exit"] not in (0, 1):  # pixpipe exits 1 when any image failed
        raise ToolFailed(f"{argv[0]} exited {tool['exit']}: {stderr[-2000:]}")
    return Measured(
        report=_last_json(stdout, stderr) if expect_report else {},
        wall_s=tool["wall_s"],
        cpu_s=tool["cpu_s"],
        peak_rss_mb=tool["maxrss_kib"] / 1024,  # Linux reports KiB
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
