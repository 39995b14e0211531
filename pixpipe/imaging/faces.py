"""Where the faces are, for the face-aware crop (``g:face``): one box around all of them, in
fractions of the image, or None.

OpenCV's Haar cascade ``haarcascade_frontalface_alt2``, which ships inside the
``opencv-python-headless`` wheel (the ``faces`` extra; OpenCV 5 has no cascades, hence ``<5``).
Measured on scikit-image's samples, LFW face crops and 263 photos without faces (Debian's
wallpapers in the benchmark corpus and crops of them, textures, noise, the astronaut with her
face painted out):

- ``frontalface_default`` finds a "face" in 20 of the 263, with up to 14 overlapping hits, as
  many as a real face gets: no ``minNeighbors`` separates them. ``alt`` and ``alt2`` never
  reach more than 2 overlapping hits there; with ``alt2`` a face of 6% of the shorter side or
  more gets 5 or more (4 with ``alt``), and ``alt2`` scans 10–20% faster.
- ``minNeighbors=5`` keeps that margin over the worst non-face (0 of 263 hit) and still finds
  the faces of that size (98 of 100 LFW faces); a coarser ``scaleFactor`` (1.15, 1.2) is
  cheaper but narrows the gap between faces and non-faces (non-faces reach 4 or 5).
- Profile faces (``haarcascade_profileface``, run again on the mirror for the other cheek)
  take two more passes, each slower than the frontal one, and reach 5 hits on photos without
  faces, more than on the astronaut's own face: not worth it.

The cascade scans a greyscale copy whose longest side is at most 640 px: its cost grows with
the pixels scanned. At 640 px, with faces from 24 px up (``MIN_FACE``), it finds faces down to
6% of the shorter side of a 3:2 photo (one of a group), in 0 of the 263 photos without one.
480 px misses faces below 8%; 1024 px finds faces of 4% at about twice the cost, and one
photo without a face gets a hit. The copy is libvips' (resize first, then grey: cheap even on
a 24 MP photo), handed to numpy as raw memory. A smaller image is not enlarged.

``cv2`` is imported on first use: ``import pixpipe.imaging`` stays light, and an install
without the extra works until ``g:face`` is asked for. The cascade loads once per process.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING

import pyvips

from ..errors import Kind, PixpipeError

if TYPE_CHECKING:
    import cv2
    import numpy as np
    import numpy.typing as npt

CASCADE = "haarcascade_frontalface_alt2.xml"
DETECT_SIDE = 640  # longest side of the copy the cascade scans (see above)
MIN_FACE = 24  # px on that copy: above the cascade's 20 px window, and ~15% cheaper than 20
MIN_NEIGHBOURS = 5  # overlapping hits a face needs; photos without faces reach 2
SCALE_STEP = 1.1  # from one window size to the next

Box = tuple[float, float, float, float]


@functools.cache
def cascade() -> cv2.CascadeClassifier:
    """The frontal-face cascade, loaded once per process. Without OpenCV (or with OpenCV 5,
    which dropped cascades), an ``unsupported`` failure that says what to install."""
    try:
        import cv2
    except ImportError as exc:
        raise PixpipeError(
            Kind.UNSUPPORTED,
            "face detection (g:face) needs OpenCV: pip install 'pixpipe[faces]'",
        ) from exc
    if not hasattr(cv2, "CascadeClassifier"):
        raise PixpipeError(
            Kind.UNSUPPORTED,
            f"face detection (g:face) needs OpenCV 4 (OpenCV {cv2.__version__} has no cascades):"
            " pip install 'pixpipe[faces]'",
        )
    # One render process per core already: OpenCV's own thread pool would oversubscribe them.
    cv2.setNumThreads(1)
    folder = cv2.data.haarcascades  # type: ignore[attr-defined]  # not in OpenCV's stubs
    classifier = cv2.CascadeClassifier(folder + CASCADE)
    if classifier.empty():
        raise PixpipeError(Kind.UNSUPPORTED, f"OpenCV {cv2.__version__} has no {CASCADE}")
    return classifier


def detection_copy(image: pyvips.Image) -> npt.NDArray[np.uint8]:
    """``image`` as the cascade scans it: 8-bit grey, longest side at most ``DETECT_SIDE``,
    alpha flattened onto white (what a viewer shows), as a (height, width) array."""
    scale = DETECT_SIDE / max(image.width, image.height)
    if scale < 1:
        image = image.resize(scale)
    if image.hasalpha():
        image = image.flatten(background=[255] * (image.bands - 1))
    grey: npt.NDArray[np.uint8] = image.colourspace("b-w")[0].cast("uchar").numpy()
    return grey


def union(faces: Sequence[Sequence[int]], width: int, height: int) -> Box:
    """One box around every ``(left, top, width, height)`` in pixels, as fractions of
    ``width`` and ``height``."""
    left = min(int(x) for x, _, _, _ in faces)
    top = min(int(y) for _, y, _, _ in faces)
    right = min(max(int(x + w) for x, _, w, _ in faces), width)
    bottom = min(max(int(y + h) for _, y, _, h in faces), height)
    return (left / width, top / height, (right - left) / width, (bottom - top) / height)


def face_box(image: pyvips.Image) -> Box | None:
    """The box (left, top, width, height) around all the frontal faces in ``image`` (8-bit
    sRGB, alpha allowed), in fractions (0..1) of its width and height; None without a face."""
    grey = detection_copy(image)
    faces = cascade().detectMultiScale(
        grey, scaleFactor=SCALE_STEP, minNeighbors=MIN_NEIGHBOURS, minSize=(MIN_FACE, MIN_FACE)
    )
    if len(faces) == 0:
        return None
    return union(faces, grey.shape[1], grey.shape[0])


__all__ = ["CASCADE", "DETECT_SIDE", "Box", "cascade", "detection_copy", "face_box", "union"]
