"""The public surface stays honest: every module says what it exports (``__all__``), what it
says exists, and no module grows past the size where it is usually two things."""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from pathlib import Path

import pytest

import pixpipe

ROOT = Path(pixpipe.__file__).parent
MAX_LINES = 400  # STYLE.md: a module past ~400 lines is usually two things


def _module_names() -> list[str]:
    found = ["pixpipe"]
    # walk_packages imports each package to find its children; it ignores an ImportError.
    found += (info.name for info in pkgutil.walk_packages(pixpipe.__path__, "pixpipe."))
    return sorted(found)


def _private(name: str) -> bool:
    """``_x`` and ``__main__`` modules are not public surface."""
    return any(part.startswith("_") for part in name.split(".")[1:])


MODULES = _module_names()
# ``__main__`` runs the CLI when imported, so it is never imported here.
IMPORTABLE = [name for name in MODULES if name.rsplit(".", 1)[-1] != "__main__"]
PUBLIC = [name for name in IMPORTABLE if not _private(name)]
HAS_AWS_EXTRAS = importlib.util.find_spec("aws_lambda_powertools") is not None

def _import(name: str) -> object:
    if name.startswith("pixpipe.aws") and not HAS_AWS_EXTRAS:
        pytest.skip("pixpipe.aws needs the aws extra (aws_lambda_powertools)")
    return importlib.import_module(name)


def test_the_walk_sees_the_whole_package() -> None:
    assert {"pixpipe.cli", "pixpipe.cli.process", "pixpipe.imaging.sniff"} <= set(MODULES)
    assert {"pixpipe.aws.handlers", "pixpipe.imaging.loaders.pdf"} <= set(MODULES)


@pytest.mark.parametrize("name", IMPORTABLE)
def test_every_name_in_all_exists_once(name: str) -> None:
    module = _import(name)
    exported = getattr(module, "__all__", None)
    if exported is None:
        return  # a private module; public ones are held to it below
    assert all(isinstance(n, str) for n in exported), f"{name}.__all__ holds a non-string"
    repeated = sorted({n for n in exported if list(exported).count(n) > 1})
    assert not repeated, f"{name}.__all__ repeats {repeated}"
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names what it does not define: {missing}"


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_module_defines_all(name: str) -> None:
    module = _import(name)
    assert hasattr(module, "__all__"), f"{name} defines no __all__"


@pytest.mark.parametrize(
    "path", sorted(p.relative_to(ROOT).as_posix() for p in ROOT.rglob("*.py"))
)
def test_no_module_is_too_long(path: str) -> None:
    lines = len((ROOT / path).read_text().splitlines())
    assert lines <= MAX_LINES, f"pixpipe/{path} has {lines} lines (at most {MAX_LINES})"
