"""Face detection for the face-aware crop: where the astronaut's face is, nothing on photos
without one, any size and alpha handled, and a clear failure without OpenCV."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import pyvips

from pixpipe.errors import Kind, PixpipeError
from pixpipe.imaging.faces import cascade, detection_copy, face_box, union
from tests.images import photo, solid

ASTRONAUT = Path(__file__).parent / "fixtures" / "astronaut.jpg"
# Eileen Collins' face in the 512x512 fixture, checked by eye on crops: from her eyes to her
# upper lip, x 0.38-0.50 and y 0.17-0.28 of the picture. The box's centre must fall inside.
FACE_CENTRE = ((0.38, 0.50), (0.17, 0.28))


def astronaut() -> pyvips.Image:
    return pyvips.Image.new_from_buffer(ASTRONAUT.read_bytes(), "")


def centre(box: tuple[float, float, float, float]) -> tuple[float, float]:
    left, top, width, height = box
    return left + width / 2, top + height / 2


def assert_on_her_face(
    box: tuple[float, float, float, float] | None, scale: tuple[float, float] = (1, 1),
    offset: tuple[float, float] = (0, 0),
) -> None:  # fmt: skip
    """``box`` is the astronaut's face, in an image where her picture spans ``scale`` of the
    width and height from ``offset`` (fractions)."""
    assert box is not None, "no face found"
    assert all(0 <= v <= 1 for v in box) and box[0] + box[2] <= 1 and box[1] + box[3] <= 1
    (x0, x1), (y0, y1) = FACE_CENTRE
    x, y = centre(box)
    assert offset[0] + x0 * scale[0] <= x <= offset[0] + x1 * scale[0], box
    assert offset[1] + y0 * scale[1] <= y <= offset[1] + y1 * scale[1], box
    # a face, not half the picture: her face is about a fifth of it across
    assert 0.12 * scale[0] <= box[2] <= 0.30 * scale[0], box


def test_the_astronauts_face_is_found_where_it_is() -> None:
    assert_on_her_face(face_box(astronaut()))


def test_one_face_gives_one_face_sized_box() -> None:
    box = face_box(astronaut())
    assert box is not None
    assert box[2] == pytest.approx(box[3], abs=0.01)  # the cascade's windows are square


def _worley(width: int, height: int) -> pyvips.Image:
    cells = (pyvips.Image.worley(width, height, cell_size=64, seed=5) * 3).cast("uchar")
    return cells.bandjoin([0, 128]).copy(interpretation="srgb")


def _noise(width: int, height: int) -> pyvips.Image:
    grain = pyvips.Image.gaussnoise(width, height, sigma=40, mean=128, seed=3).cast("uchar")
    return grain.bandjoin([grain, grain]).copy(interpretation="srgb")


def _without_her_face() -> pyvips.Image:
    """The astronaut with her face painted grey: suit, flag, shuttle and helmet remain."""
    return astronaut().draw_rect([128, 128, 128], 150, 40, 150, 160, fill=True)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: photo(1600, 1000), id="gradients-and-noise"),
        pytest.param(lambda: _worley(1200, 800), id="worley-cells"),
        pytest.param(lambda: _noise(1000, 800), id="gaussian-noise"),
        pytest.param(lambda: solid(800, 600), id="solid"),
        pytest.param(_without_her_face, id="astronaut-without-her-face"),
    ],
)
def test_no_face_gives_none(make: Callable[[], pyvips.Image]) -> None:
    assert face_box(make()) is None


def test_alpha_is_flattened_before_detection() -> None:
    opaque = astronaut().bandjoin(255)
    assert face_box(opaque) == face_box(astronaut())


def test_a_transparent_canvas_is_measured_as_part_of_the_image() -> None:
    """Her picture in the top right of a transparent 1024x768 canvas: the box is in fractions
    of the whole canvas, so it moves right and down by the picture's place."""
    canvas = pyvips.Image.black(1024, 768, bands=4).copy(interpretation="srgb")
    image = canvas.insert(astronaut().bandjoin(255), 512, 0)
    assert_on_her_face(face_box(image), scale=(512 / 1024, 512 / 768), offset=(0.5, 0.0))


@pytest.mark.parametrize("size", [(20, 20), (1, 1), (64, 8)])
def test_a_tiny_image_gives_none(size: tuple[int, int]) -> None:
    assert face_box(astronaut().thumbnail_image(size[0], height=size[1], size="force")) is None


def test_a_large_image_is_searched_on_a_small_copy() -> None:
    """6000x4000 (her picture enlarged to 6000 px, cut to 3:2): the cascade scans 640x427."""
    big = astronaut().resize(6000 / 512).crop(0, 0, 6000, 4000)
    assert detection_copy(big).shape == (427, 640)
    assert_on_her_face(face_box(big), scale=(1, 6000 / 4000))


def test_a_small_image_is_not_enlarged() -> None:
    grey = detection_copy(astronaut())
    assert grey.shape == (512, 512) and grey.dtype.name == "uint8"


@pytest.mark.parametrize(
    ("faces", "size", "box"),
    [
        ([(10, 20, 30, 30)], (100, 200), (0.1, 0.1, 0.3, 0.15)),
        ([(10, 10, 20, 20), (60, 50, 30, 30)], (100, 100), (0.1, 0.1, 0.8, 0.7)),
        ([(80, 0, 40, 40)], (100, 100), (0.8, 0.0, 0.2, 0.4)),  # clipped to the image
    ],
)
def test_the_box_holds_every_face(
    faces: list[tuple[int, int, int, int]], size: tuple[int, int],
    box: tuple[float, float, float, float],
) -> None:  # fmt: skip
    assert union(faces, *size) == pytest.approx(box)


def test_the_cascade_loads_once() -> None:
    assert cascade() is cascade()


@pytest.fixture
def without_cv2(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    cascade.cache_clear()
    monkeypatch.setitem(sys.modules, "cv2", None)  # `import cv2` raises ImportError
    yield
    cascade.cache_clear()


def test_without_opencv_the_failure_says_what_to_install(without_cv2: None) -> None:
    with pytest.raises(PixpipeError) as failure:
        face_box(astronaut())
    assert failure.value.kind is Kind.UNSUPPORTED
    assert "pixpipe[faces]" in failure.value.message


def test_the_module_loads_without_opencv() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["cv2"] = None  # as if opencv-python-headless were not installed
        import pixpipe.imaging
        import pixpipe.imaging.faces
        from pixpipe.imaging import faces
        assert callable(faces.face_box)
        """
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr


def test_importing_the_module_does_not_load_opencv() -> None:
    code = "import sys, pixpipe.imaging.faces; assert 'cv2' not in sys.modules"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
