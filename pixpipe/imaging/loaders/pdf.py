"""PDF and Adobe Illustrator (PDF-compatible) originals: the first page, through PDFium.

libvips' own PDF loader is not in pyvips-binary, so PDFium (pypdfium2) rasterises the page at
exactly the scale the plan asks for; the result joins the same steps as any other image.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pypdfium2 as pdfium
import pyvips

from ...errors import Kind, PixpipeError
from ..source import Source

_LOCK = threading.Lock()  # PDFium is not thread-safe


@contextmanager
def _first_page(data: bytes) -> Iterator[pdfium.PdfPage]:
    with _LOCK:
        try:
            doc = pdfium.PdfDocument(data)
        except pdfium.PdfiumError as exc:
            raise PixpipeError(Kind.CORRUPT, f"PDF cannot be opened: {exc}") from None
        try:
            if len(doc) < 1:
                raise PixpipeError(Kind.CORRUPT, "PDF without pages")
            page = doc[0]
            try:
                yield page
            finally:
                page.close()
        finally:
            doc.close()


def pdf_header(data: bytes) -> Source:
    """Size of the first page at 72 dpi (one pixel per point)."""
    with _first_page(data) as page:
        width, height = page.get_size()
    return Source("pdf", max(1, round(width)), max(1, round(height)), 1, True)


def render_pdf(data: bytes, width: int, height: int) -> pyvips.Image:
    """The first page rasterised to ``width``×``height``, sRGB with alpha (transparent paper)."""
    with _first_page(data) as page:
        pw, ph = page.get_size()
        bitmap = page.render(
            scale=max(width / pw, height / ph), may_draw_forms=True, rev_byteorder=True,
            fill_color=(255, 255, 255, 0), prefer_bgrx=False,
        )  # fmt: skip
        try:
            w, h, stride = bitmap.width, bitmap.height, bitmap.stride
            bands = bitmap.n_channels
            raw = bytes(bitmap.buffer)
        finally:
            bitmap.close()
    image = pyvips.Image.new_from_memory(raw, stride // bands, h, bands, "uchar")
    if stride // bands != w:
        image = image.crop(0, 0, w, h)
    return image.copy(interpretation="srgb")


__all__ = ["pdf_header", "render_pdf"]
