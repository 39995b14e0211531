"""The plan: exact output geometry for every variant, and the one decode that serves them all.

Pure arithmetic on sizes, no pixels: the sizes tests assert are decided here.
- ``inside``: fit within W×H keeping the aspect ratio; never enlarged unless ``enlarge``.
- ``cover``: scale to cover W×H, crop the overflow by ``gravity``. Without ``enlarge`` a source
  smaller than the box is not scaled up; it is cropped to the box's aspect ratio instead
  (imgproxy's behaviour), so a square thumbnail of a small photo is still square.
- ``contain``: fit inside, then pad to exactly W×H with ``background``.
- ``fill``: stretch to exactly W×H.
- ``outside``: the smallest size that covers W×H, nothing cropped (thumbor's full-fit-in).
- ``auto``: ``cover`` when the box and the source have the same orientation, else ``inside``.
- ``adapt``: the box is turned to the source's orientation first (thumbor's adaptive-fit-in).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..recipe import Variant


@dataclass(frozen=True, slots=True)
class Geometry:
    """Resize to ``resize``, then crop (cover) or pad (contain) to ``final``."""

    resize: tuple[int, int]
    final: tuple[int, int]


def geometry(width: int, height: int, variant: Variant) -> Geometry:
    """Where ``variant`` takes a ``width``×``height`` (upright) source."""
    box_w, box_h = variant.width, variant.height
    fit = variant.fit
    if box_w and box_h and (fit == "auto" or variant.adapt):
        same = (box_w >= box_h) == (width >= height)
        if fit == "auto":  # imgproxy's rt:auto
            fit = "cover" if same else "inside"
        if variant.adapt and not same:  # thumbor's adaptive-fit-in: the box turned
            box_w, box_h = box_h, box_w
    if fit == "fill":
        assert box_w and box_h
        size = (box_w, box_h)
        return Geometry(size, size)
    if fit == "cover":
        assert box_w and box_h
        scale = max(box_w / width, box_h / height)
        if scale > 1 and not variant.enlarge:
            # Too small to cover: keep the pixels, crop to the box's aspect ratio.
            if box_w / box_h > width / height:
                final = (width, max(1, round(width * box_h / box_w)))
            else:
                final = (max(1, round(height * box_w / box_h)), height)
            return Geometry((width, height), final)
        resize = (max(box_w, round(width * scale)), max(box_h, round(height * scale)))
        return Geometry(resize, (box_w, box_h))
    scales = [s for s in (box_w and box_w / width, box_h and box_h / height) if s]
    scale = max(scales) if fit == "outside" else min(scales)
    if not variant.enlarge:
        scale = min(scale, 1.0)
    resize = (max(1, round(width * scale)), max(1, round(height * scale)))
    if fit == "contain":
        assert box_w and box_h
        return Geometry(resize, (box_w, box_h))
    return Geometry(resize, resize)


def base_size(width: int, height: int, geometries: list[Geometry]) -> tuple[int, int]:
    """The smallest upright decode, same aspect ratio, that every resize can derive from.

    Rounded like the largest variant's own resize, so that variant needs no second resample.
    """
    scale = max(max(g.resize[0] / width, g.resize[1] / height) for g in geometries)
    base_w = max(round(width * scale), *(g.resize[0] for g in geometries))
    base_h = max(round(height * scale), *(g.resize[1] for g in geometries))
    return max(1, base_w), max(1, base_h)

__all__ = [
    "Geometry",
    "base_size",
    "geometry",
]
