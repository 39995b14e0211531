"""`pixpipe process` end to end, as a user runs it: a real subprocess, real files."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from . import images
from .test_imaging import HOSTILE


def pixpipe(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pixpipe", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=cwd)


# Runs pixpipe and prints the largest RSS of it and its render processes: a fresh parent, so
# nothing else this test process ever started (a browser, another pixpipe) counts.
_PEAK = """
import resource, subprocess, sys
run = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout=300)
sys.stdout.write(run.stdout)
sys.stderr.write(run.stderr)
sys.stderr.write(f"\\npeak-kb {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}\\n")
sys.exit(run.returncode)
"""


def measured(*args: str | Path) -> tuple[subprocess.CompletedProcess[str], float]:
    """``pixpipe(*args)`` and the peak RSS, in MB, of its processes alone."""
    command = [sys.executable, "-c", _PEAK, sys.executable, "-m", "pixpipe", *map(str, args)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    peak_kb = int(run.stderr.rsplit("peak-kb ", 1)[1].split()[0])
    return run, peak_kb / 1024


@pytest.fixture
def album(tmp_path: Path) -> Path:
    root = tmp_path / "album"
    (root / "2024" / "trip").mkdir(parents=True)
    (root / "2024" / "trip" / "IMG 0001.jpg").write_bytes(images.jpeg(images.photo(1200, 800)))
    (root / "2024" / "cover.png").write_bytes(images.png(images.photo(640, 960)))
    (root / "logo.svg").write_bytes(images.svg())
    (root / ".DS_Store").write_bytes(b"hidden files are skipped")
    return root


def test_layout_and_exit_zero(album: Path, tmp_path: Path):
    lone = tmp_path / "lone.webp"
    lone.write_bytes(images.photo(500, 500).webpsave_buffer())
    out = tmp_path / "out"
    specs = ["-v", "m=800x800", "-v", "t=100x100,cover,webp"]
    run = pixpipe("process", album, lone, "-o", out, *specs)
    assert run.returncode == 0, run.stderr + run.stdout
    made = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert made == [
        "m/2024/cover.jpg", "m/2024/trip/IMG 0001.jpg", "m/logo.jpg", "m/lone.jpg",
        "t/2024/cover.webp", "t/2024/trip/IMG 0001.webp", "t/logo.webp", "t/lone.webp",
    ]  # fmt: skip
    assert images.decoded((out / "m/2024/trip/IMG 0001.jpg").read_bytes()).width == 800
    assert "done" in run.stdout and "images/s" in run.stdout


def test_failures_exit_one_and_json_report(album: Path, tmp_path: Path):
    (album / "notes.jpg").write_text("this is text with an image extension")
    (album / "half.jpg").write_bytes(images.truncated(images.jpeg()))
    run = pixpipe("process", album, "-o", tmp_path / "out", "--json", "-j", "2")
    assert run.returncode == 1
    report = json.loads(run.stdout)
    assert (report["done"], report["failed"]) == (3, 2)
    assert report["failed_by_kind"] == {"unsupported": 1, "corrupt": 1}
    by_name = {Path(r["input"]).name: r for r in report["results"]}
    assert by_name["notes.jpg"]["kind"] == "unsupported"
    assert by_name["half.jpg"]["kind"] == "corrupt" and by_name["half.jpg"]["message"]
    good = by_name["IMG 0001.jpg"]
    assert good["status"] == "done" and len(good["variants"]) == 6
    assert {v["name"] for v in good["variants"]} == {"xl", "l", "m", "s", "sq-m", "sq-s"}
    assert all(Path(v["path"]).is_file() for v in good["variants"])


def test_hostile_batch_finishes_quickly_in_bounded_memory(tmp_path: Path):
    folder = tmp_path / "hostile"
    folder.mkdir()
    for name, make, _ in HOSTILE:
        (folder / f"{name}.jpg").write_bytes(make())
    (folder / "good.jpg").write_bytes(images.jpeg())
    started = time.monotonic()
    run, peak_mb = measured("process", folder, "-o", tmp_path / "out", "--json", "-j", "2")
    elapsed = time.monotonic() - started
    report = json.loads(run.stdout)
    kinds = {Path(r["input"]).stem: r.get("kind") for r in report["results"]}
    assert kinds == {**{name: kind.value for name, _, kind in HOSTILE}, "good": None}
    assert run.returncode == 1 and report["done"] == 1
    assert elapsed < 60, f"hostile files took {elapsed:.0f} s"
    assert peak_mb < 600, f"a worker peaked at {peak_mb:.0f} MB"


def test_time_limit_stops_a_stalled_file(tmp_path: Path):
    (tmp_path / "big.png").write_bytes(images.png(images.photo(4000, 3000), compression=1))
    (tmp_path / "pixpipe.toml").write_text("[limits]\nmax_seconds = 0.05\n")
    run = pixpipe("process", "big.png", "-o", "out", "--json", cwd=tmp_path)
    result = json.loads(run.stdout)["results"][0]
    assert run.returncode == 1
    assert (result["kind"], "took longer than 0.05 s" in result["message"]) == ("too_large", True)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-v", "t=10x10,crop"], "unknown option 'crop'"),
        (["--config", "nope.toml"], "nope.toml not found"),
    ],
)
def test_usage_errors_exit_two_with_a_message(tmp_path: Path, args, message):
    (tmp_path / "a.jpg").write_bytes(images.jpeg(images.photo(100, 100)))
    run = pixpipe("process", tmp_path / "a.jpg", "-o", tmp_path / "out", *args, cwd=tmp_path)
    assert run.returncode == 2 and message in run.stderr


def test_missing_input_is_a_usage_error(tmp_path: Path):
    run = pixpipe("process", tmp_path / "nothing-here", "-o", tmp_path / "out")
    assert run.returncode == 2 and "no such file or folder" in run.stderr
