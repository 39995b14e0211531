"""imgproxy's benchmark workload: pixpipe through its imgproxy URLs against thumbor.

    .venv/bin/python -m benchmarks.compat [--runs 3] [--seconds 15] [--no-write]

The workload of imgproxy's own benchmark (github.com/imgproxy/imgproxy-benchmark): a photo of
about 2000 px on its long side resized to fit inside 512x512, the output in the source's own
format — JPEG q80, PNG, WebP q75, AVIF q65. imgproxy published requests/s on 2 vCPU; they are
printed beside ours as a reference (another machine: compare the ratios, not the figures).

Sources: one 2000x1333 photo in the four formats (``corpus/compat/``, made on first use), cut
from the corpus' most detailed wallpaper (``corpus.py``'s Debian packages), scaled down and
grained like a camera photo (a ~0.5 MB JPEG q90, a ~5 MB PNG) so the decoders do a real photo's
work.

- **pixpipe**: ``pixpipe api`` (renders in one process per core) with an ``[imgproxy]`` key
  and salt; ``/imgproxy/{signature}/rs:fit:512:512/q:{q}/plain/local:///{key}@{ext}`` signed
  as imgproxy signs it (``compat/imgproxy.sign``). Every request a cache miss: each names
  another key, all hard links to the one source (``X-Cache: miss`` is checked).
- **thumbor** from PyPI in its own venv, one process per core, without result storage:
  ``/unsafe/fit-in/512x512/filters:quality(q):format(fmt)/{name}``.

The servers and the load are ``transforms.py``'s: ``--concurrency`` requests in flight for
``--seconds`` from an async httpx client on the same cores; requests/s (and per core), p50 and
p95 latency. The first response of every case is decoded and checked (at most 512x512, in the
format asked for); a format thumbor cannot make is reported as such, not measured. Runs are
interleaved (each run does every format on both servers, the server order alternating) and
medians reported; the section between the ``compat:`` markers of ``RESULTS.md`` is rewritten
(``--no-write``: print only).
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pyvips

from benchmarks import corpus, transforms
from benchmarks.transforms import Sample, load
from pixpipe.bus import EmbeddedServer
from pixpipe.compat.imgproxy import sign

HERE = Path(__file__).resolve().parent
SOURCES = corpus.CORPUS / "compat"
WIDTH, HEIGHT = 2000, 1333
BOX = 512
KEY = "6b65792d6f662d7069787069706527732d62656e63686d61726b"  # hex, as imgproxy's
SALT = "73616c742d6f662d7069787069706527732d62656e63686d61726b"
PREFIX = "/imgproxy"  # [imgproxy] prefix, its default
SERVERS = ("thumbor", "pixpipe")


@dataclass(frozen=True)
class Case:
    """One format of imgproxy's benchmark: the source's and the output's."""

    label: str
    ext: str  # pixpipe's @ext, the source's suffix
    fmt: str  # thumbor's format(), and the name said in errors
    quality: int | None  # None: lossless PNG
    loader: str  # how libvips names what it decoded
    published: dict[str, float]  # imgproxy's benchmark, 2 vCPU, requests/s

    def encode(self, image: pyvips.Image) -> bytes:
        """The source file, encoded the way a camera or an export would."""
        if self.fmt == "jpeg":
            return bytes(image.jpegsave_buffer(Q=90, interlace=False, strip=True))
        if self.fmt == "png":
            return bytes(image.pngsave_buffer(compression=6))
        if self.fmt == "webp":
            return bytes(image.webpsave_buffer(Q=90, strip=True))
        return bytes(image.heifsave_buffer(Q=70, compression="av1", effort=4, strip=True))


CASES = (
    Case("JPEG q80", "jpg", "jpeg", 80, "jpegload", {"imgproxy": 79.6, "thumbor": 51.6}),
    Case("PNG", "png", "png", None, "pngload", {"imgproxy": 19.2, "thumbor": 8.9}),
    Case("WebP q75", "webp", "webp", 75, "webpload", {"imgproxy": 22.0, "thumbor": 13.2}),
    Case("AVIF q65", "avif", "avif", 65, "heifload", {"imgproxy": 13.2, "thumbor": 13.1}),
)
PUBLISHED_AS = {"pixpipe": "imgproxy", "thumbor": "thumbor"}  # whose figure a row is read by


@functools.cache
def photo() -> pyvips.Image:
    """The corpus' most detailed wallpaper (its largest file), cut to 3:2, scaled to 2000x1333
    and grained like a camera photo: the JPEG weighs ~0.5 MB, as a real one does."""
    wallpaper = corpus.load_rgb(max(corpus.fetch_sources(), key=lambda p: p.stat().st_size))
    side = min(wallpaper.width * 2 // 3, wallpaper.height)
    image = wallpaper.crop((wallpaper.width - side * 3 // 2) // 2, (wallpaper.height - side) // 2,
                           side * 3 // 2, side)  # fmt: skip
    image = image.resize(WIDTH / image.width, vscale=HEIGHT / image.height).copy_memory()
    # Zero-mean luminance grain (gaussnoise's default mean is 128).
    noise = pyvips.Image.gaussnoise(WIDTH, HEIGHT, sigma=3.0, mean=0, seed=WIDTH)
    return (image + noise).cast("uchar")


def source(case: Case) -> Path:
    """``corpus/compat/photo-2000.{ext}``, made once."""
    path = SOURCES / f"photo-{WIDTH}.{case.ext}"
    if not path.exists():
        SOURCES.mkdir(parents=True, exist_ok=True)
        part = path.with_suffix(path.suffix + ".part")
        part.write_bytes(case.encode(photo()))
        part.replace(path)
    return path


# --- the two servers' URLs and answers -------------------------------------------------------


@dataclass
class Target:
    """One case on both servers; the image is ``tag`` (``transforms.link_sources``' names)."""

    case: Case
    tag: str
    pixpipe: str
    thumbor: str
    counter: int = 0

    def pixpipe_url(self) -> str:
        """Another hard link every time: a cache miss."""
        self.counter += 1
        if self.counter >= transforms.LINKS:
            raise SystemExit(f"more than {transforms.LINKS} requests: raise transforms.LINKS")
        quality = "" if self.case.quality is None else f"/q:{self.case.quality}"
        key = f".bench/{self.tag}/{self.counter:05d}.{self.case.ext}"
        path = f"/rs:fit:{BOX}:{BOX}{quality}/plain/local:///{key}@{self.case.ext}"
        signature = sign(bytes.fromhex(KEY), bytes.fromhex(SALT), path)
        return f"{self.pixpipe}{PREFIX}/{signature}{path}"

    def thumbor_url(self) -> str:
        quality = "" if self.case.quality is None else f"quality({self.case.quality}):"
        return (f"{self.thumbor}/unsafe/fit-in/{BOX}x{BOX}/filters:{quality}format({self.case.fmt})"
                f"/{self.tag}.{self.case.ext}")  # fmt: skip

    def url(self, server: str) -> str:
        return self.pixpipe_url() if server == "pixpipe" else self.thumbor_url()


def problem(url: str, case: Case, expect_cache: str | None) -> str | None:
    """What is wrong with ``url``'s answer (None: a 200, at most 512x512, in ``case``'s
    format, and the cache state expected)."""
    response = httpx.get(url, timeout=120)
    if response.status_code != 200:
        return f"{response.status_code} {response.text[:300]}"
    if expect_cache and response.headers.get("x-cache") != expect_cache:
        return f"X-Cache {response.headers.get('x-cache')!r}, not {expect_cache!r}"
    image = pyvips.Image.new_from_buffer(response.content, "")
    made = image.get("vips-loader")
    if made.startswith("heifload"):  # HEIF holds HEVC too: AVIF is AV1
        made += f" ({image.get('heif-compression')})"
    wanted = case.loader + (" (av1)" if case.fmt == "avif" else "")
    if not made.replace("_buffer", "").startswith(wanted) or max(image.width, image.height) > BOX:
        return f"{image.width}x{image.height} from {made}, not at most {BOX}x{BOX} from {wanted}"
    return None


# --- the run ---------------------------------------------------------------------------------


Results = dict[str, dict[str, list[Sample]]]  # case label → server → one sample per run


def check(targets: list[Target], seconds: float, concurrency: int) -> dict[str, str]:
    """Both servers' first answer for every case; a warm-up. → what thumbor cannot make."""
    missing: dict[str, str] = {}
    for t in targets:
        if bad := problem(t.pixpipe_url(), t.case, "miss"):
            raise SystemExit(f"pixpipe, {t.case.label}: {bad}")
        if bad := problem(t.thumbor_url(), t.case, None):
            missing[t.case.label] = bad
            print(f"thumbor cannot make {t.case.label}: {bad}", file=sys.stderr)
        for server in SERVERS if t.case.label not in missing else ("pixpipe",):
            load(lambda t=t, s=server: t.url(s), seconds, concurrency)
    return missing


def run(args: argparse.Namespace) -> tuple[Results, dict[str, str]]:
    results: Results = {}
    with tempfile.TemporaryDirectory(prefix="pixpipe-bench-") as tmp:
        work = Path(tmp)
        images, data = work / "thumbor-images", work / "pixpipe-data"
        images.mkdir()
        wanted: dict[str, Callable[[], Path]] = {c.label: lambda c=c: source(c) for c in CASES}
        transforms.link_sources(data / "originals", images, wanted)
        imgproxy = {"PIXPIPE_IMGPROXY__KEY": KEY, "PIXPIPE_IMGPROXY__SALT": SALT}
        with (
            EmbeddedServer(work / "nats") as nats,
            transforms.pixpipe(data, nats.url, **imgproxy) as pix,
            transforms.thumbor(images, work, False) as thu,
        ):
            targets = [Target(c, f"src{i}", pix, thu) for i, c in enumerate(CASES)]
            missing = check(targets, min(2.0, args.seconds), args.concurrency)
            for r in range(args.runs):
                for t in targets:
                    for server in SERVERS if r % 2 == 0 else SERVERS[::-1]:
                        if server == "thumbor" and t.case.label in missing:
                            continue
                        cache = "miss" if server == "pixpipe" else None
                        sample = load(lambda t=t, s=server: t.url(s), args.seconds,
                                      args.concurrency, cache)  # fmt: skip
                        results.setdefault(t.case.label, {}).setdefault(server, []).append(sample)
                        print(f"run {r + 1}/{args.runs}  {t.case.label:9} {server:8} "
                              f"{sample.rps:7.1f} req/s  p50 {sample.p50:7.1f} ms  "
                              f"p95 {sample.p95:7.1f} ms", file=sys.stderr)  # fmt: skip
    return results, missing


# --- report ----------------------------------------------------------------------------------


def _median(samples: list[Sample], what: Callable[[Sample], float]) -> float:
    return statistics.median(what(s) for s in samples)


def _command(args: argparse.Namespace) -> str:
    flags = f"--runs {args.runs} --seconds {args.seconds:g} --concurrency {args.concurrency}"
    return f".venv/bin/python -m benchmarks.compat {flags}{' --no-write' if args.no_write else ''}"


def markdown(results: Results, missing: dict[str, str], args: argparse.Namespace) -> str:
    cores = os.cpu_count() or 1
    lines = [
        "### imgproxy's benchmark workload: pixpipe (imgproxy URLs) vs thumbor",
        "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {cores} cores (`nproc`), {transforms._cpu_model()}; shared with other "
        f"work (load average {args.load_before:.1f} before, {os.getloadavg()[0]:.1f} after)",
        f"- command: `{_command(args)}`",
        f"- {transforms._thumbor_version()}, one process per core, no result storage; pixpipe "
        f"{transforms._pixpipe_version()} (libvips {pyvips.version(0)}.{pyvips.version(1)}."
        f"{pyvips.version(2)}), `pixpipe api`, renders in one process per core, every request "
        "a cache miss",
        f"- workload: a {WIDTH}x{HEIGHT} photo resized to fit {BOX}x{BOX}, output in the "
        f"source's format: pixpipe `{PREFIX}/{{sig}}/rs:fit:{BOX}:{BOX}/q:{{q}}/plain/"
        f"local:///{{key}}@{{ext}}`, thumbor `/unsafe/fit-in/{BOX}x{BOX}/filters:"
        "quality({q}):format({fmt})/{name}` (no quality for PNG)",
        f"- load: {args.concurrency} requests in flight, {args.seconds:g} s per measurement, "
        f"from an async httpx client on the same cores; medians of {args.runs} interleaved runs",
        "- published: imgproxy's own benchmark on 2 vCPU (another machine), imgproxy's figure "
        "beside pixpipe's rows, thumbor's beside thumbor's",
        "",
        "| output | server | req/s | req/s per core | p50 ms | p95 ms | published req/s, 2 vCPU |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for case in CASES:
        for server in SERVERS:
            published = f"{PUBLISHED_AS[server]} {case.published[PUBLISHED_AS[server]]:.1f}"
            samples = results.get(case.label, {}).get(server)
            if not samples:
                lines.append(f"| {case.label} | {server} | cannot | — | — | — | {published} |")
                continue
            rps = _median(samples, lambda s: s.rps)
            p50, p95 = _median(samples, lambda s: s.p50), _median(samples, lambda s: s.p95)
            lines.append(f"| {case.label} | {server} | {rps:.1f} | {rps / cores:.1f} | "
                         f"{p50:.0f} | {p95:.0f} | {published} |")  # fmt: skip
    lines += ["", "| output | pixpipe ÷ thumbor, here | imgproxy ÷ thumbor, published |",
              "| --- | ---: | ---: |"]  # fmt: skip
    for case in CASES:
        modes = results.get(case.label, {})
        here = "—"
        if modes.get("thumbor") and modes.get("pixpipe"):
            ratio = _median(modes["pixpipe"], lambda s: s.rps) / _median(
                modes["thumbor"], lambda s: s.rps
            )
            here = f"{ratio:.2f}×"
        theirs = case.published["imgproxy"] / case.published["thumbor"]
        lines.append(f"| {case.label} | {here} | {theirs:.2f}× |")
    notes = [f"- thumbor cannot make {label}: {why}" for label, why in missing.items()]
    if not any(c.label in missing for c in CASES if c.fmt == "avif"):
        notes.append("- thumbor's AVIF is Pillow's own codec (`PIL._avif`, which thumbor 7.8 "
                     "prefers to pillow-avif-plugin): no plugin is installed.")  # fmt: skip
    return "\n".join([*lines, "", "Reading the numbers:", "", *notes, *NOTES]) + "\n"


NOTES = [
    "- The published figures come from another machine and another load generator; the "
    "ratios (last table) travel better than the requests/s. Here the load generator, the "
    "servers and other work share the same cores.",
    "- Encoders: pixpipe writes progressive JPEG (imgproxy's default is baseline, which is "
    "cheaper), WebP and AVIF at libvips effort 4; thumbor writes progressive optimized JPEG and "
    "uses Pillow's defaults for WebP (method 4) and AVIF (speed 6). Most of pixpipe's AVIF time "
    "is the AV1 encoder at effort 4, far slower at this size than libavif at speed 6.",
    "- PNG: compression level 6 on both. pixpipe decodes through libvips' `thumbnail` "
    "(shrink-on-load where the format allows it, `imaging/decode.py`); thumbor's Pillow engine "
    "asks for a JPEG `draft` at the target size, and decodes the other formats whole.",
]


def main(argv: list[str] | None = None) -> None:
    args = transforms.arguments(__doc__ or "", argv, "per measurement")
    results, missing = run(args)
    raw = {label: {server: [asdict(s) for s in samples] for server, samples in servers.items()}
           for label, servers in results.items()}  # fmt: skip
    transforms.publish(markdown(results, missing, args), raw, "compat", args)


if __name__ == "__main__":
    main()
