"""Originals libvips cannot decode itself (from pyvips-binary): PDF through PDFium, HEIC
through pillow-heif. Each gives a ``Source`` from the header and a decoded libvips image.

Leaves of the import graph: they import ``..source`` and never ``inspect`` or ``decode``,
which import them (lazily, so pypdfium2 and pillow-heif load only for their own formats).
"""

__all__: list[str] = []
