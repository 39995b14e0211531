"""Upload bodies as streams under a byte limit: never whole in memory, never read past it.

- ``raw(request, limit)``: the request body (any transfer encoding, chunked too);
- ``multipart_file(request, limit)``: the field ``file`` of a ``multipart/form-data`` body,
  parsed as it arrives by python-multipart's streaming parser (the other fields are skipped);
- ``sniffed(chunks)``: the format named by the first bytes, and the whole stream again.

A body past its limit stops with ``too_large`` as soon as the limit is crossed (413), whatever
its ``Content-Length`` said, so a store writing the stream aborts its write and keeps nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import HTTPException, Request
from python_multipart.multipart import MultipartParser, parse_options_header

from ..errors import Kind, PixpipeError
from ..imaging.sniff import SNIFF_BYTES, sniff

# What a multipart body may carry besides its file: boundaries, part headers, small fields.
MULTIPART_OVERHEAD = 64 * 1024
FIELD = b"file"


def too_large(limit: int) -> PixpipeError:
    return PixpipeError(Kind.TOO_LARGE, f"upload is over the limit of {limit} bytes")


def check_declared(request: Request, limit: int) -> None:
    """413 at once when the declared ``Content-Length`` is already over."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + MULTIPART_OVERHEAD:
        raise too_large(limit)


async def raw(request: Request, limit: int, exactly: int | None = None) -> AsyncIterator[bytes]:
    """The body, chunk by chunk; ``too_large`` past ``limit``, 400 past ``exactly`` bytes."""
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if exactly is not None and size > exactly:
            raise HTTPException(400, f"this upload URL takes exactly {exactly} bytes (got more)")
        if size > limit:
            raise too_large(limit)
        if chunk:
            yield chunk
    if exactly is not None and size != exactly:
        raise HTTPException(400, f"this upload URL takes exactly {exactly} bytes (got {size})")


class _FilePart:
    """python-multipart callbacks that keep the data of the part named ``file``."""

    def __init__(self) -> None:
        self.header_field = b""
        self.header_value = b""
        self.disposition = b""
        self.in_file = False
        self.seen = False
        self.pending: list[bytes] = []

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._begin,
            "on_header_field": lambda data, start, end: self._add("header_field", data[start:end]),
            "on_header_value": lambda data, start, end: self._add("header_value", data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._data,
            "on_part_end": self._end,
        }

    def _add(self, name: str, data: bytes) -> None:
        setattr(self, name, getattr(self, name) + data)

    def _begin(self) -> None:
        self.disposition = b""

    def _header_end(self) -> None:
        if self.header_field.lower() == b"content-disposition":
            self.disposition = self.header_value
        self.header_field = self.header_value = b""

    def _headers_finished(self) -> None:
        _, params = parse_options_header(self.disposition)
        self.in_file = params.get(b"name") == FIELD and not self.seen
        self.seen = self.seen or self.in_file

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self.in_file:
            self.pending.append(bytes(data[start:end]))

    def _end(self) -> None:
        self.in_file = False


async def multipart_file(request: Request, limit: int) -> AsyncIterator[bytes]:
    """The ``file`` field's bytes as they arrive; ``too_large`` once past ``limit``."""
    _, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if not boundary:
        raise HTTPException(400, "multipart upload without a boundary")
    part = _FilePart()
    parser = MultipartParser(boundary, part.callbacks())  # type: ignore[arg-type]
    size = received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit + MULTIPART_OVERHEAD:
            raise too_large(limit)
        parser.write(chunk)
        for data in part.pending:
            size += len(data)
            if size > limit:
                raise too_large(limit)
            yield data
        part.pending.clear()
    parser.finalize()
    if not part.seen:
        raise HTTPException(400, "multipart upload needs a file field named 'file'")


async def sniffed(chunks: AsyncIterator[bytes]) -> tuple[str, AsyncIterator[bytes]]:
    """The format the first bytes name (``PixpipeError`` when none: 415, or 400 if empty),
    and the whole stream, those first bytes included."""
    head = b""
    async for chunk in chunks:
        head += chunk
        if len(head) >= SNIFF_BYTES:
            break
    if not head:
        raise HTTPException(400, "empty upload")
    fmt = sniff(head)

    async def whole() -> AsyncIterator[bytes]:
        yield head
        async for chunk in chunks:
            yield chunk

    return fmt, whole()


__all__ = ["check_declared", "multipart_file", "raw", "sniffed", "too_large"]
