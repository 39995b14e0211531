"""The Pillow peer: JPEG draft mode (DCT scaling) to the size the largest variant needs,
EXIF transpose, LANCZOS (with ``reducing_gap=2``, as ``Image.thumbnail`` does), centred
cover crop, JPEG q80 progressive; a pool of ``-j`` processes."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageOps

from benchmarks.peers.driver import main
from benchmarks.recipes import QUALITY, RECIPES, Size, draft_size

_SWAPS = {5, 6, 7, 8}  # EXIF orientations that turn the image a quarter


def process_one(path: Path, recipe: str, out: Path) -> None:
    with Image.open(path) as original:
        # draft() takes the stored (unrotated) size; the recipe's boxes are upright.
        turned = original.getexif().get(0x0112) in _SWAPS
        width, height = original.size[::-1] if turned else original.size
        need = draft_size(width, height, recipe)
        original.draft("RGB", need[::-1] if turned else need)
        image = ImageOps.exif_transpose(original).convert("RGB")
    for size in RECIPES[recipe]:
        variant = _shape(image, size)
        target = out / size.name / f"{path.stem}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        variant.save(target, "JPEG", quality=QUALITY, progressive=True, optimize=True)


def _shape(image: Image.Image, size: Size) -> Image.Image:
    box = (size.width, size.height)
    if size.fit == "cover":
        return ImageOps.fit(image, box, Image.Resampling.LANCZOS, centering=(0.5, 0.5))
    scale = min(1.0, size.width / image.width, size.height / image.height)
    if scale == 1.0:
        return image
    new = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(new, Image.Resampling.LANCZOS, reducing_gap=2.0)


if __name__ == "__main__":
    main(process_one)
