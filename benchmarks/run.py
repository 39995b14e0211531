"""pixpipe against sharp, Pillow and ImageMagick: same corpus, same recipes, same quality.

    python -m benchmarks.run [--count N] [--runs R] [--only TOOL]... [--recipe NAME]...

Builds the corpus if missing, runs every tool on every recipe ``--runs`` times (interleaved,
so machine noise spreads over all tools; medians reported), then the single 8000x5000 JPEG
through the default six on one core. Prints the markdown, updates the generated section of
``benchmarks/RESULTS.md`` and draws ``benchmarks/throughput.png``.
"""

from __future__ import annotations

import argparse
import importlib.util
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from benchmarks import corpus, measure, recipes, report, tools

HERE = Path(__file__).resolve().parent
console = Console(stderr=True)


def ensure_requirements() -> None:
    """pip-install benchmarks/requirements.txt (matplotlib, ssimulacra2) when one is missing."""
    if any(importlib.util.find_spec(name) is None for name in ("matplotlib", "ssimulacra2")):
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "-r"]
        subprocess.run([*pip, str(HERE / "requirements.txt")], check=True)


def select_tools(only: list[str] | None) -> list[tools.Tool]:
    chosen = [t for t in tools.TOOLS if not only or t.name in only]
    ready = []
    for tool in chosen:
        why = tool.available()
        if why:
            console.print(f"[yellow]skipping {tool.name}: {why}")
        else:
            ready.append(tool)
    return ready


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def run_batches(
    chosen: list[tools.Tool], files: list[Path], recipe_names: list[str], runs: int
) -> list[report.Batch]:
    batches = {(t.name, r): report.Batch(t.name, r) for r in recipe_names for t in chosen}
    with _progress() as progress:
        task = progress.add_task("batches", total=len(batches) * runs)
        for run in range(runs):
            for recipe in recipe_names:
                for tool in chosen:
                    progress.update(task, description=f"run {run + 1}: {tool.name} {recipe}")
                    batches[tool.name, recipe].runs.append(_one_batch(tool, files, recipe))
                    progress.advance(task)
    return list(batches.values())


def _one_batch(tool: tools.Tool, files: list[Path], recipe: str) -> measure.Measured:
    subset = files[: tool.max_images] if tool.max_images else files
    with measure.scratch("pixpipe-bench-") as out:
        call = tool.batch(subset, recipe, Path(out))
        return measure.run(call.argv, call.stdin, call.env)


def run_big(names: list[str], runs: int) -> list[report.Big]:
    bigs = [report.Big(name) for name in names if name in tools.BIG_TOOLS]
    with _progress() as progress:
        task = progress.add_task("8000x5000", total=len(bigs) * runs)
        for _ in range(runs):
            for big in bigs:
                progress.update(task, description=f"8000x5000: {big.tool}")
                with measure.scratch("pixpipe-big-") as out:
                    call = tools.BIG_TOOLS[big.tool](corpus.BIG, Path(out))
                    expect = big.tool != "imagemagick"
                    big.runs.append(measure.run(call.argv, call.stdin, call.env, expect))
                progress.advance(task)
    return bigs


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=corpus.DEFAULT_COUNT, help="images")
    parser.add_argument("--runs", type=int, default=3, help="runs per cell (median)")
    names = [t.name for t in tools.TOOLS]
    parser.add_argument("--only", action="append", choices=names, help="run only TOOL")
    parser.add_argument("--recipe", action="append", choices=list(recipes.RECIPES))
    parser.add_argument("--no-big", action="store_true", help="skip the 8000x5000 test")
    parser.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    command = shlex.join(["python", "-m", "benchmarks.run", *(argv or sys.argv[1:])])
    ensure_requirements()
    files = corpus.build(args.count)
    chosen = select_tools(args.only)
    recipe_names = args.recipe or list(recipes.RECIPES)
    batches = run_batches(chosen, files, recipe_names, args.runs)
    bigs = [] if args.no_big else run_big([t.name for t in chosen], args.runs)
    text = report.markdown(batches, bigs, command, args.runs)
    print(text)
    if not args.no_write:
        report.update_results(text)
        if batches:
            console.print(f"chart: {report.chart(batches)}")
        console.print(f"updated {report.RESULTS}")
    shutil.rmtree(HERE / "out", ignore_errors=True)


if __name__ == "__main__":
    main()
