"""The cost model: pricing math by hand, the published study's figures, real measurements."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pixpipe import DEFAULT_RECIPE, Recipe
from pixpipe.cost import (
    DAYS_PER_MONTH,
    DEFAULT_PRICES,
    Container,
    CostOptions,
    CpuLimit,
    Profile,
    Workload,
    break_even,
    compute,
    estimate,
    estimate_stated,
    lambda_monthly,
    lambda_seconds,
    load_prices,
    measure,
    synthetic_sample,
    tiered,
    write_chart,
)
from pixpipe.cost.prices import override
from tests.test_http_harness import Live, live_pixpipe

ROOT = Path(__file__).resolve().parents[1]

# The published study: 8000 requests/day, 30 s each, 4096 MB, 10240 MB of /tmp on Lambda,
# against 30 always-on ECS Fargate tasks.
STUDY_LAMBDA = 489.22
STUDY_FARGATE = 1674.59


def test_a_month_is_730_hours() -> None:
    assert pytest.approx(30.416667) == DAYS_PER_MONTH


@pytest.mark.parametrize(
    ("units", "expected"),
    [
        (0, 0.0),
        (1_000_000, 1_000_000 * 0.0000166667),
        (6e9, 6e9 * 0.0000166667),
        (7e9, 6e9 * 0.0000166667 + 1e9 * 0.0000150000),
        (16e9, 6e9 * 0.0000166667 + 9e9 * 0.0000150000 + 1e9 * 0.0000133334),
    ],
)
def test_tiered_gb_seconds(units: float, expected: float) -> None:
    assert tiered(units, DEFAULT_PRICES.lambda_x86_gb_s) == pytest.approx(expected)


def test_arm64_tiers_are_wider() -> None:
    arm = DEFAULT_PRICES.lambda_arm64_gb_s
    assert tiered(7.5e9, arm) == pytest.approx(7.5e9 * 0.0000133334)
    expected = 7.5e9 * 0.0000133334 + 11.25e9 * 0.0000120001 + 1e9 * 0.0000106667
    assert tiered(19.75e9, arm) == pytest.approx(expected)


def test_lambda_bill_by_hand() -> None:
    # 1000/day → 30,416.67 requests; 2 s at 2048 MB → 2 × 2 GB = 4 GB-s each.
    requests = 1000 * 730 / 24
    bill = lambda_monthly(1000, 2.0, 2048, DEFAULT_PRICES, "x86", ephemeral_mb=1536)
    assert bill.requests == pytest.approx(requests * 0.20 / 1e6)
    assert bill.compute == pytest.approx(requests * 4 * 0.0000166667)
    assert bill.ephemeral == pytest.approx(requests * 2 * 1.0 * 0.0000000309)  # 1 GB over 512
    assert bill.total == pytest.approx(0.0061 + 2.0278 + 0.0019, abs=1e-4)
    arm = lambda_monthly(1000, 2.0, 2048, DEFAULT_PRICES, "arm64")
    assert arm.compute == pytest.approx(requests * 4 * 0.0000133334)
    assert arm.ephemeral == 0  # 512 MB of /tmp is free


def test_free_tier_takes_off_a_million_requests_and_400k_gb_seconds() -> None:
    prices = override(DEFAULT_PRICES, {"free_tier": True})
    inside = lambda_monthly(1000, 1.0, 1024, prices)  # 30,417 requests, 30,417 GB-s
    assert inside.total == 0
    outside = lambda_monthly(100_000, 1.0, 1024, prices)  # 3.04 M requests and GB-s
    requests = 100_000 * DAYS_PER_MONTH
    assert outside.requests == pytest.approx((requests - 1e6) * 0.2e-6)
    assert outside.compute == pytest.approx((requests - 400_000) * 0.0000166667)


@pytest.mark.parametrize(
    ("memory_mb", "parallel", "expected"),
    [
        (1769, 1.0, 2.0),  # one full vCPU: the single-thread CPU time
        (884.5, 1.0, 4.0),  # half a vCPU: twice as long
        (128, 1.0, 2.0 * 1769 / 128),
        (3538, 1.0, 1.0),  # two vCPUs, all of it parallel: half
        (3538, 0.0, 2.0),  # two vCPUs, none of it parallel: no faster
        (2653.5, 1.0, 2.0 / 1.5),  # 1.5 vCPU
        (10240, 1.0, 1.0),  # capped at the two threads measured
        (10240, 0.5, 1.5),  # Amdahl: 2 × (0.5 + 0.5 / 2)
    ],
)
def test_lambda_seconds_follow_the_cpu_share(
    memory_mb: float, parallel: float, expected: float
) -> None:
    two_threads = 2.0 * ((1 - parallel) + parallel / 2)
    profile = Profile(cpu_s=2.0, parallel_s=two_threads, threads=2)
    assert profile.parallel_fraction == pytest.approx(parallel)
    assert lambda_seconds(profile, memory_mb) == pytest.approx(expected)


def test_the_study_lambda_figure_within_one_percent() -> None:
    bill = lambda_monthly(8000, 30, 4096, DEFAULT_PRICES, "x86", ephemeral_mb=10240)
    # 243,333.33 requests × 30 s × 4 GB = 29.2 M GB-s → 486.67; requests 0.05; /tmp 2.14.
    assert bill.compute == pytest.approx(486.67, abs=0.005)
    assert bill.requests == pytest.approx(0.0487, abs=1e-4)
    assert bill.ephemeral == pytest.approx(2.1429, abs=1e-4)
    assert bill.total == pytest.approx(STUDY_LAMBDA, rel=0.01)
    assert bill.total == pytest.approx(488.86, abs=0.005)


def test_the_study_lambda_figure_to_the_cent_with_its_storage_price() -> None:
    # The study's calculator rounds each line to the cent; a /tmp price of 0.000000036 per
    # GB-second (above us-east-1's) accounts for the last 0.36 USD.
    prices = override(DEFAULT_PRICES, {"lambda_ephemeral_gb_s": 0.000000036})
    bill = lambda_monthly(8000, 30, 4096, prices, "x86", ephemeral_mb=10240)
    lines = round(bill.compute, 2) + round(bill.requests, 2) + round(bill.ephemeral, 2)
    assert lines == pytest.approx(STUDY_LAMBDA, abs=0.001)


FARGATE_SIZES = (
    [(0.25, m) for m in (0.5, 1, 2)] + [(0.5, m) for m in range(1, 5)]
    + [(1, m) for m in range(2, 9)] + [(2, m) for m in range(4, 17)]
    + [(4, m) for m in range(8, 31)]
)  # fmt: skip


def test_the_study_fargate_figure_is_thirty_1_vcpu_8_gb_tasks() -> None:
    def monthly(size: tuple[float, float]) -> float:
        return Container(*size).monthly(DEFAULT_PRICES, count=30)

    closest = min(FARGATE_SIZES, key=lambda size: abs(monthly(size) - STUDY_FARGATE))
    assert closest == (1, 8)
    assert monthly(closest) == pytest.approx(1665.28, abs=0.005)  # 30 × 0.07604 $/h × 730 h
    assert monthly(closest) == pytest.approx(STUDY_FARGATE, rel=0.01)
    assert monthly((4, 30)) == pytest.approx(6466.41, abs=0.01)  # not the study's tasks


def test_the_study_workload_stated() -> None:
    workload = Workload(8000, peak_concurrency=30, ephemeral_mb=10240,
                        container=Container(1, 8))  # fmt: skip
    result = estimate_stated(30, 4096, workload, DEFAULT_PRICES)
    (row,) = result.rows
    assert row.avg_s == 30
    assert row.x86 == pytest.approx(STUDY_LAMBDA, rel=0.01)
    assert result.containers.count == 30
    assert result.containers.monthly == pytest.approx(STUDY_FARGATE, rel=0.01)
    assert result.cheapest == "lambda"
    # Lambda x86 stays cheaper until its linear bill reaches the 30 tasks' 1665.28 USD.
    per_image = (row.x86 - 0.0) / (8000 * DAYS_PER_MONTH)
    assert result.lambda_best is not None and result.lambda_best.arch == "arm64"
    assert result.break_even_images_per_day is not None
    assert result.break_even_images_per_day > 1665.28 / (per_image * DAYS_PER_MONTH)


def test_the_300000_images_for_27_50_from_implied_inputs() -> None:
    # The study gives no memory size or duration. 27.50 USD less 0.06 of requests is 5.49
    # x86 GB-seconds an image: e.g. 1536 MB for 3.66 s. Those inputs are our assumption.
    per_day = 300_000 / DAYS_PER_MONTH  # the batch, billed within one month
    bill = lambda_monthly(per_day, 3.66, 1536, DEFAULT_PRICES, "x86")
    assert bill.requests == pytest.approx(0.06)
    assert bill.total == pytest.approx(27.50, rel=0.01)
    assert bill.total / 300_000 < 0.0001  # "under 0.01 cent per image"


def test_break_even_by_hand() -> None:
    # Lambda at 0.01 USD per image-day-month against 100 USD of containers: 10,000 a day.
    assert break_even(100.0, lambda v: v * 0.01) == pytest.approx(10_000, abs=0.01)
    assert break_even(100.0, lambda v: 0.0) is None


def test_no_break_even_when_the_tasks_cannot_keep_up() -> None:
    # Tasks of 4 vCPU and 2 GB hold one 1.5 GB render at a time: 124.69 USD a month each
    # for 86,400 one-second images a day, which Lambda renders for less.
    profile = Profile(cpu_s=1.0, parallel_s=1.0, peak_rss_mb=1500)
    workload = Workload(1000, container=Container(4, 2))
    result = estimate(profile, profile, workload, DEFAULT_PRICES)
    assert (result.containers.count, result.containers.slots) == (1, 1)
    assert result.containers.monthly == pytest.approx(124.69, abs=0.01)
    assert result.lambda_best is not None
    per_image_day = result.lambda_best.monthly / 1000  # Lambda's bill is linear here
    assert 86_400 * per_image_day < 124.69
    # One task's bill meets Lambda's only at a volume one task cannot render …
    assert 124.69 / per_image_day > 86_400
    # … and a fleet that keeps up always costs more: no break-even.
    assert result.break_even_images_per_day is None


def test_break_even_is_where_a_fleet_that_keeps_up_costs_what_lambda_does() -> None:
    profile = Profile(cpu_s=1.0, parallel_s=1.0, peak_rss_mb=500)
    workload = Workload(1000, peak_concurrency=3)  # three 1 vCPU, 2 GB tasks: 108.13 USD
    result = estimate(profile, profile, workload, DEFAULT_PRICES)
    assert result.containers.count == 3 and result.lambda_best is not None
    even = result.break_even_images_per_day
    assert even is not None and even <= 3 * 86_400
    assert even * result.lambda_best.monthly / 1000 == pytest.approx(
        result.containers.monthly, rel=1e-4
    )


def test_containers_absorb_the_peak_one_image_per_vcpu() -> None:
    workload = Workload(86_400, peak_concurrency=5, container=Container(2, 4))
    profile = Profile(cpu_s=1.0, parallel_s=1.0, peak_rss_mb=500)
    result = estimate(profile, profile, workload, DEFAULT_PRICES)
    # One image a second for one second: average concurrency 1; the peak of 5 rules.
    assert result.containers.slots == 2
    assert result.containers.count == 3
    hourly = 2 * 0.04048 + 4 * 0.004445
    assert result.containers.monthly == pytest.approx(3 * hourly * 730)
    assert result.containers.per_1000 == pytest.approx(
        result.containers.monthly / (86_400 * DAYS_PER_MONTH) * 1000
    )
    # Memory decides how many fit when it is the tighter limit.
    assert Container(2, 1).slots(peak_rss_mb=600) == 1


def test_memory_sizes_below_the_peak_rss_do_not_fit() -> None:
    profile = Profile(cpu_s=0.5, parallel_s=0.4, threads=2, peak_rss_mb=300)
    result = estimate(profile, profile, Workload(1000), DEFAULT_PRICES)
    fits = {row.memory_mb: row.fits for row in result.rows}
    assert not fits[128] and not fits[256] and fits[512] and fits[10240]
    assert result.lambda_best is not None and result.lambda_best.memory_mb >= 512
    cheapest = min(min(r.x86, r.arm64) for r in result.rows if r.fits)
    assert result.lambda_best.monthly == pytest.approx(cheapest)
    # Below one vCPU every size costs the same: of those, the fastest (one full vCPU).
    assert (result.lambda_best.memory_mb, result.lambda_best.arch) == (1769, "arm64")


def test_prices_override_from_toml_and_json(tmp_path: Path) -> None:
    toml = tmp_path / "prices.toml"
    toml.write_text(
        'date = "2026-01-01"\nregion = "ap-northeast-1"\nlambda_ephemeral_gb_s = 3.6e-8\n'
        "lambda_x86_gb_s = [[6e9, 0.00002], [0, 0.00001]]\nservers_monthly = 250\n"
    )
    prices = load_prices(toml)
    assert prices.region == "ap-northeast-1"
    assert prices.lambda_x86_gb_s == ((6e9, 0.00002), (None, 0.00001))
    assert prices.servers_monthly == 250
    assert prices.fargate_x86_vcpu_hour == DEFAULT_PRICES.fargate_x86_vcpu_hour
    js = tmp_path / "prices.json"
    js.write_text(json.dumps({"lambda_arm64_gb_s": 0.00001, "free_tier": True}))
    assert load_prices(js).lambda_arm64_gb_s == ((None, 0.00001),)
    js.write_text(json.dumps({"lamda_request": 1}))
    with pytest.raises(ValueError, match="unknown price lamda_request"):
        load_prices(js)
    js.write_text(json.dumps({"lambda_request": -1}))
    with pytest.raises(ValueError, match="lambda_request must be a number"):
        load_prices(js)


def test_options_are_checked_at_the_edge() -> None:
    with pytest.raises(ValueError, match=r"--memory-mb must be 128\.\.10240"):
        CostOptions(DEFAULT_RECIPE, seconds_per_image=1, memory_mb=64)
    with pytest.raises(ValueError, match="--seconds-per-image"):
        CostOptions(DEFAULT_RECIPE, seconds_per_image=1)


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cost-sample")
    synthetic_sample(folder, sizes=((2400, 1800), (1800, 2400)))
    return folder


SMALL = Recipe.parse(["m=800x800", "s=300x300,cover"])


LIMITS = (CpuLimit(0.5), CpuLimit(1), CpuLimit(2), CpuLimit(2, threads=2))


def test_measuring_a_tiny_sample_gives_sane_numbers(sample_dir: Path, tmp_path: Path) -> None:
    sample = measure(sorted(sample_dir.iterdir()), SMALL, cpu_limits=LIMITS)
    assert len(sample.images) == 2 and not sample.failed
    for image in sample.images:
        assert image.bytes > 10_000 and image.width * image.height == 2400 * 1800
        assert [(r.vcpu, r.threads) for r in image.runs] == [(1, 1), (0.5, 1), (2, 1), (2, 2)]
        for run in image.runs:
            assert 0 < run.cpu_s < 10 and 0 < run.wall_s < 20
            assert 20 < run.peak_rss_mb < 2000  # a Python with libvips, not the test runner
    assert sample.worst.cpu_s >= sample.average.cpu_s > 0
    assert 0 <= sample.average.parallel_fraction <= 1
    # Half a vCPU stretches a render to at least twice its CPU time; one thread on two vCPUs
    # still takes about its CPU time. (Bounds on ratios only: the test machine is shared.)
    for image in sample.images:
        half, two = image.run(0.5), image.run(2)
        assert half is not None and half.wall_s > 1.5 * half.cpu_s
        assert two is not None and two.wall_s > 0.8 * two.cpu_s

    # What pixpipe's own seconds per image make of the study's workload.
    study = Workload(8000, peak_concurrency=30, ephemeral_mb=10240, container=Container(1, 8))
    result = estimate(sample.average, sample.worst, study, DEFAULT_PRICES)
    at_4096 = next(r for r in result.rows if r.memory_mb == 4096)
    assert 0 < at_4096.x86 < STUDY_LAMBDA
    assert result.lambda_best is not None and result.lambda_best.monthly <= at_4096.x86
    chart = write_chart(result, tmp_path / "chart.png")
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compute_measures_prices_and_charts(sample_dir: Path, tmp_path: Path) -> None:
    options = CostOptions(SMALL, inputs=(sample_dir,), images_per_day=8000, limit=1,
                          chart=tmp_path / "c.png")  # fmt: skip
    outcome = compute(options)
    assert outcome.sample is not None and len(outcome.sample.images) == 1
    assert outcome.chart is not None and outcome.chart.stat().st_size > 10_000
    assert outcome.estimate.source == "measured"
    assert len(outcome.estimate.rows) == 13


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pixpipe", "cost", *args],
        capture_output=True, text=True, cwd=cwd, timeout=120,
    )  # fmt: skip


def test_cli_prices_the_study_as_json(tmp_path: Path) -> None:
    done = _cli(
        "--images-per-day", "8000", "--seconds-per-image", "30", "--memory-mb", "4096",
        "--ephemeral-mb", "10240", "--peak-concurrency", "30", "--container-memory-gb", "8",
        "--json", "--chart", str(tmp_path / "study.png"), cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    (row,) = report["rows"]
    assert row["x86"] == pytest.approx(STUDY_LAMBDA, rel=0.01)
    assert report["containers"]["monthly"] == pytest.approx(STUDY_FARGATE, rel=0.01)
    assert report["sample"] is None
    assert Path(report["chart"]).is_file()


def test_cli_measures_a_folder(sample_dir: Path, tmp_path: Path) -> None:
    chart = tmp_path / "power.png"
    done = _cli(str(sample_dir), "-v", "m=800x800", "--images-per-day", "8000",
                "--limit", "1", "--json", "--chart", str(chart), cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["sample"]["variants"] == ["m"]
    assert report["sample"]["average"]["cpu_s"] > 0
    assert report["lambda_best"]["monthly"] > 0
    assert math.isfinite(report["containers"]["per_1000"])
    assert chart.is_file()


def test_cli_answers_in_words(sample_dir: Path, tmp_path: Path) -> None:
    done = _cli("--images-per-day", "8000", str(sample_dir), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = " ".join(done.stdout.split())
    assert "sample: 2 images, variants xl, l, m, s, sq-m, sq-s" in out
    assert "Answer: run it on AWS Lambda." in out and "USD per 1000 images" in out
    assert "always-on Fargate task" in out
    assert (tmp_path / "pixpipe-cost.png").is_file()  # the default chart


def test_images_that_cannot_be_rendered_are_reported_not_measured(
    sample_dir: Path, tmp_path: Path
) -> None:
    (tmp_path / "notes.jpg").write_text("not an image")
    good = sorted(sample_dir.iterdir())[0]
    sample = measure([good, tmp_path / "notes.jpg"], SMALL, cpu_limits=(CpuLimit(1),))
    assert [i.name for i in sample.images] == [good.name]
    assert sample.failed == (("notes.jpg", sample.failed[0][1]),)
    assert sample.failed[0][1].startswith("unsupported: ")
    with pytest.raises(ValueError, match="nothing could be measured"):
        measure([tmp_path / "notes.jpg"], SMALL, cpu_limits=(CpuLimit(1),))


def test_cli_says_what_is_wrong(tmp_path: Path) -> None:
    done = _cli("--seconds-per-image", "3", cwd=tmp_path)
    assert done.returncode == 2
    assert "--memory-mb" in done.stderr
    done = _cli(str(tmp_path / "nowhere"), "--no-chart", cwd=tmp_path)
    assert done.returncode == 2 and "no such file or folder" in done.stderr


# ---- over HTTP: GET /v1/cost and the page at /cost, on a live pixpipe ------------------------


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live_pixpipe(tmp_path_factory) as pixpipe:
        yield pixpipe


STUDY_QUERY = {"images_per_day": 8000, "seconds_per_image": 30, "memory_mb": 4096,
               "ephemeral_mb": 10240, "peak_concurrency": 30}  # fmt: skip


@pytest.mark.timeout(180)
def test_http_prices_the_study(live: Live) -> None:
    response = live.http.get("/v1/cost", params=STUDY_QUERY)
    assert response.status_code == 200, response.text
    report = response.json()
    (row,) = report["rows"]
    assert row["x86"] == pytest.approx(STUDY_LAMBDA, rel=0.01)
    assert report["containers"]["count"] == 30 and report["sample"] is None
    assert report["prices"]["date"] == DEFAULT_PRICES.date


@pytest.mark.timeout(180)
def test_http_measures_once_then_remembers(live: Live) -> None:
    first = live.http.get("/v1/cost", params={"images_per_day": 8000})
    assert first.status_code == 200, first.text
    report = first.json()
    assert report["sample"]["synthetic"] and report["sample"]["average"]["cpu_s"] > 0
    assert report["sample"]["variants"] == list(DEFAULT_RECIPE.names)
    assert len(report["rows"]) == 13 and report["lambda_best"]["monthly"] > 0
    again = live.http.get("/v1/cost", params={"images_per_day": 80_000}).json()
    assert again["sample"] == report["sample"]  # the same measurement, priced anew
    assert again["lambda_best"]["monthly"] > report["lambda_best"]["monthly"]


def test_http_errors_name_the_parameter(live: Live) -> None:
    response = live.http.get("/v1/cost", params={"seconds_per_image": 3})
    assert response.status_code == 400
    assert "seconds_per_image must be given together with memory_mb" in response.json()["detail"]
    assert live.http.get("/v1/cost", params={"images_per_day": -1}).status_code == 422
    assert live.http.get("/v1/cost", params={"images_per_day": "inf"}).status_code == 422
    extreme = {**STUDY_QUERY, "images_per_day": 1e9, "seconds_per_image": 900}
    assert live.http.get("/v1/cost", params=extreme).status_code == 200


def test_the_cost_page_is_self_contained_and_linked(live: Live) -> None:
    page = live.http.get("/cost")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/v1/cost" in page.text and "<svg" in page.text
    assert "<script src" not in page.text and "https://" not in page.text  # no CDN
    assert 'href="/cost"' in live.http.get("/").text


CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.timeout(180)
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium")
def test_the_cost_page_draws_the_answer_and_charts_in_a_browser(live: Live) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    query = "&".join(f"{k}={v}" for k, v in STUDY_QUERY.items())
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{live.url}/cost?{query}")
            page.wait_for_selector("#rows tbody tr", timeout=60_000)
            answer = page.inner_text("#answer")
            assert "Run it on AWS Lambda." in answer and "391.53 USD/month" in answer
            assert page.locator("#time path").count() == 2  # average and worst
            assert page.locator("#money path").count() == 4  # x86, arm64, worst, containers
            assert page.input_value("input[name=memory_mb]") == "4096"  # the query fills the form
            assert not errors, errors
        finally:
            browser.close()
