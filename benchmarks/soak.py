"""The soak: does a running pipeline's memory stay flat over 10,000 images?

    python -m benchmarks.soak [--count 10000] [--env MALLOC_ARENA_MAX=2] [--no-write]

A fresh ``pixpipe up`` (two render processes, the two-thumbnail recipe) takes ``--count``
uploads of the corpus images (each under its own key), paced so that no more than a few
dozen wait at once: the backlog stays the same all along, and what grows is what the
process keeps. Every 250 images the resident memory (``VmRSS``) of each process is sampled:
``pixpipe`` itself (HTTP, bus, stores, state), its render processes (replaced after
``MAX_TASKS_PER_PROCESS`` images by design) and nats-server. The figure the issue asks for
is ``pixpipe``'s RSS after all the images against its RSS after 1,000 (target: within 10%).
``--env`` runs ``pixpipe up`` with extra environment variables (malloc settings, say), so
that a setting is measured before it is chosen. Writes the ``soak`` section of RESULTS.md
(or, with ``--env``, prints it) and ``soak.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from benchmarks import corpus, pipeline, report
from benchmarks.measure import tree_cpu

CHART = report.HERE / "soak.png"
EVERY = 250  # images between two samples
AHEAD = 32  # uploads at most not yet done
FIRST = 1000  # the reference point


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def sample(pid: int) -> dict[str, float]:
    """RSS by role: the pipeline's process, the largest render process, nats-server."""
    out = {"pixpipe": rss_mb(pid), "render": 0.0, "nats-server": 0.0}
    for child, (name, _) in tree_cpu(pid).items():
        if child == pid:
            continue
        try:
            rss = rss_mb(child)
        except FileNotFoundError:
            continue
        role = "nats-server" if name == "nats-server" else "render"
        out[role] = max(out[role], rss)
    return out


async def soak(up: pipeline.Up, files: list[Path], count: int) -> list[tuple[int, dict]]:
    samples: list[tuple[int, dict]] = []
    data = [f.read_bytes() for f in files]
    with pipeline._progress() as progress:
        task = progress.add_task(f"soak: {count} images", total=count)
        async with pipeline._client(up.url) as client:
            slots = asyncio.Semaphore(8)
            sent = 0

            async def upload(index: int) -> None:
                async with slots:
                    body = data[index % len(data)]
                    response = await client.post(f"/v1/images?key=soak/{index:05d}.jpg",
                                                 content=body)  # fmt: skip
                    response.raise_for_status()

            pending: set[asyncio.Task[None]] = set()
            done = 0
            next_sample = EVERY
            while done < count:
                while sent < count and sent - done < AHEAD:
                    pending.add(asyncio.create_task(upload(sent)))
                    sent += 1
                await asyncio.sleep(0.05)
                finished = {t for t in pending if t.done()}
                for t in finished:
                    t.result()
                pending -= finished
                done = await pipeline._processed(client)
                progress.update(task, completed=done)
                if done >= next_sample:
                    samples.append((done, sample(up.pid)))
                    next_sample += EVERY
    return samples


def at(samples: list[tuple[int, dict]], images: int) -> dict:
    return next(s for n, s in samples if n >= images)


def markdown(samples: list[tuple[int, dict]], count: int, env: list[str], command: str,
             load: tuple[str, str]) -> str:  # fmt: skip
    reference = FIRST if count >= 2 * FIRST else EVERY  # a short trial run: its first sample
    first, last = at(samples, reference), samples[-1][1]
    growth = last["pixpipe"] / first["pixpipe"] - 1
    setting = ", ".join(f"`{e}`" for e in env) or "glibc malloc defaults"
    rows = [
        f"| {role} | {first[role]:.0f} | {last[role]:.0f} | {last[role] / first[role] - 1:+.1%} |"
        for role in ("pixpipe", "render", "nats-server")
    ]
    return "\n".join([
        "### Soak: memory over 10,000 images",
        "",
        f"{time.strftime('%Y-%m-%d')}, {report.machine()}. Command: `{command}`; load average "
        f"{load[0]} before, {load[1]} after. Memory settings: {setting}.",
        "",
        f"{count} uploads of the corpus images through `pixpipe up` (two render processes, "
        f"two-thumbnail recipe), at most {AHEAD} not yet done at any time; RSS sampled every "
        f"{EVERY} images (chart: `soak.png`).",
        "",
        f"| process | RSS MB after {reference} | RSS MB after {samples[-1][0]} | change |",
        "| --- | ---: | ---: | ---: |",
        *rows,
        "",
        f"`pixpipe`'s own process after {samples[-1][0]} images: **{growth:+.1%}** of its RSS "
        f"after {reference} (target: within ±10%). Render processes are replaced every 500 images "
        "by design (`MAX_TASKS_PER_PROCESS`); the figure is the largest one at the sample.",
    ])  # fmt: skip


def chart(samples: list[tuple[int, dict]], path: Path = CHART) -> None:
    fig, ax = plt.subplots(figsize=(8, 4))
    for role in ("pixpipe", "render", "nats-server"):
        ax.plot([n for n, _ in samples], [s[role] for _, s in samples], label=role)
    ax.set_xlabel("images done")
    ax.set_ylabel("RSS (MB)")
    ax.set_ylim(bottom=0)
    ax.set_title("pixpipe up: resident memory over the soak")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for pixpipe up")
    parser.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    args = parser.parse_args(argv)
    files = corpus.build(200)[:200]
    before = Path("/proc/loadavg").read_text().split()[0]
    extra = dict(e.split("=", 1) for e in args.env)
    with pipeline.pixpipe_up("two-thumbnails", env=extra) as up:
        samples = asyncio.run(soak(up, files, args.count))
    after = Path("/proc/loadavg").read_text().split()[0]
    command = "python -m benchmarks.soak " + shlex.join(sys.argv[1:] if argv is None else argv)
    text = markdown(samples, args.count, args.env, command.strip(), (before, after))
    print(text)
    if not args.no_write:
        chart(samples)
        report.update_results(text, name="soak")


if __name__ == "__main__":
    os.environ.setdefault("VIPS_WARNING", "0")
    main()
