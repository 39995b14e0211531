"""The imaging package's shape: the HTTP layer can sniff without libvips, the modules import
one another as a flow (no circle), and what each module says it exports exists."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import pixpipe.imaging

PACKAGE = "pixpipe.imaging"
ROOT = Path(pixpipe.imaging.__file__).parent


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__.py``)."""
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join((PACKAGE, *parts))] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The package's own modules that ``name`` imports anywhere (function bodies too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from .x import y`: y may be a submodule of x, or a name defined in it.
            targets.update(f"{base}.{alias.name}" for alias in node.names)
            targets.add(base)
    return {t for t in targets if t in MODULES and t != name}


def test_sniff_loads_without_libvips() -> None:
    code = textwrap.dedent(
        """
        import sys
        import pixpipe.imaging.sniff
        from pixpipe.imaging.sniff import sniff
        assert "pyvips" not in sys.modules, "pixpipe.imaging.sniff imported pyvips"
        assert sniff(b"\\xff\\xd8\\xff\\xe0\\x00\\x10JFIF\\x00") == "jpeg"
        assert sniff(b"\\x89PNG\\r\\n\\x1a\\n\\x00\\x00\\x00\\rIHDR") == "png"
        import pixpipe.imaging
        from pixpipe.imaging import Source, sniff as lazy
        assert lazy is sniff and Source.__module__ == "pixpipe.imaging.source"
        assert "pyvips" not in sys.modules, "the package or Source imported pyvips"
        """
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr


RENDER_AND_PICKLE = """
import pickle, sys
import pyvips
from pixpipe.imaging import render
from pixpipe.recipe import Recipe, Variant
photo = pyvips.Image.black(64, 48).jpegsave_buffer()
sys.stdout.buffer.write(pickle.dumps(render(photo, Recipe((Variant("t", 32, 32),)))))
"""
UNPICKLE = """
import pickle, sys
rendered = pickle.loads(sys.stdin.buffer.read())
assert rendered["t"].width == 32 and rendered["t"].content_type == "image/jpeg"
assert rendered.source.width == 64 and rendered.placeholder
heavy = {"pyvips", "PIL", "pypdfium2"} & set(sys.modules)
assert not heavy, f"unpickling a render result imported {heavy}"
"""


def test_a_render_result_unpickles_without_libvips() -> None:
    """A render process pickles its ``Rendered`` to the pipeline's asyncio process, which never
    touches a pixel: taking it in there must not load libvips, Pillow or PDFium."""
    made = subprocess.run([sys.executable, "-c", RENDER_AND_PICKLE], capture_output=True,
                          timeout=60, check=True)  # fmt: skip
    run = subprocess.run([sys.executable, "-c", UNPICKLE], input=made.stdout,
                         capture_output=True, timeout=60)  # fmt: skip
    assert run.returncode == 0, run.stderr.decode()


@pytest.mark.parametrize("entry", ["inspect", "decode", "render"])
def test_every_module_that_decodes_hardens_libvips_on_import(entry: str) -> None:
    """The package no longer hardens libvips on import (it imports nothing): the modules that
    hand bytes to libvips do, through ``libvips.py``. matrixload stands for a blocked loader."""
    code = textwrap.dedent(
        f"""
        import pyvips
        load = lambda: pyvips.Operation.call(
            "matrixload_source", pyvips.Source.new_from_memory(b"2 1\\n1 2\\n")
        )
        assert load().avg() == 1.5  # not blocked before
        import pixpipe.imaging.{entry}
        try:
            load()
        except pyvips.Error as exc:
            assert "blocked" in str(exc), exc
        else:
            raise AssertionError("matrixload still runs after importing {entry}")
        """
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr


def test_public_names_are_the_functions_not_their_submodules() -> None:
    """``inspect``, ``render`` and ``sniff`` are also submodule names: importing the submodule
    must not replace the function on the package (nor on ``pixpipe``)."""
    import pixpipe
    import pixpipe.imaging.inspect
    import pixpipe.imaging.render
    import pixpipe.imaging.sniff

    for name in ("inspect", "render", "sniff"):
        module = sys.modules[f"{PACKAGE}.{name}"]
        assert getattr(pixpipe.imaging, name) is getattr(module, name)
        assert getattr(pixpipe, name) is getattr(module, name)
    assert pixpipe.imaging.inspect.__module__ == f"{PACKAGE}.inspect"


def test_imaging_modules_import_without_a_circle() -> None:
    graph = {name: _imports(name, path) for name, path in MODULES.items()}
    assert graph[f"{PACKAGE}.inspect"] >= {f"{PACKAGE}.sniff", f"{PACKAGE}.source"}
    assert f"{PACKAGE}.loaders.pdf" in graph[f"{PACKAGE}.decode"]  # the parser saw the loaders

    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in path:
            cycle = " → ".join((*path[path.index(name) :], name))
            pytest.fail(f"import circle: {cycle}")
        if name in done:
            return
        for target in sorted(graph[name]):
            visit(target, (*path, name))
        done.add(name)

    for name in sorted(graph):
        visit(name, ())


def _defines_all(path: Path) -> bool:
    tree = ast.parse(path.read_text(), str(path))
    targets = (t for node in tree.body if isinstance(node, ast.Assign) for t in node.targets)
    return any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets)


@pytest.mark.parametrize("name", sorted(n for n, p in MODULES.items() if _defines_all(p)))
def test_every_name_in_all_exists(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert len(set(exported)) == len(exported), f"{name}.__all__ repeats a name"
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names what it does not define: {missing}"
