"""Upload bodies: bytes, a path or a binary file object, sent in chunks (a file is never read
whole into memory), with a progress callback as each chunk goes out. One stream class serves
the sync and the async client: a local file's chunk is read in place, as httpx itself does
for multipart files."""

from __future__ import annotations

import contextlib
import mimetypes
import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import httpx

CHUNK = 64 * 1024
Data = bytes | bytearray | memoryview | str | os.PathLike[str] | BinaryIO
"""What an upload takes: bytes, a path (``str`` or ``Path``), or a file object opened ``rb``."""
Progress = Callable[[int, "int | None"], object]
"""``progress(sent_bytes, total_bytes)``; ``total_bytes`` is ``None`` when not known."""


@dataclass(frozen=True)
class Source:
    """An upload's bytes, opened: its ``size`` (``None`` for a stream of unknown length), a
    file name for forms and type guesses, and the raw ``content`` (bytes or a file object)."""

    content: bytes | BinaryIO
    size: int | None
    name: str

    def chunks(self) -> Iterator[bytes]:
        if isinstance(self.content, bytes):
            view = memoryview(self.content)
            for at in range(0, len(view), CHUNK):
                yield bytes(view[at : at + CHUNK])
            return
        while chunk := self.content.read(CHUNK):
            yield chunk

    def content_type(self, given: str | None) -> str:
        """``given``, else a guess from the file name (the API sniffs the bytes anyway)."""
        return given or mimetypes.guess_type(self.name)[0] or "application/octet-stream"


def _remaining(file: BinaryIO) -> int | None:
    """Bytes from the file's position to its end, if it can tell (seekable)."""
    try:
        if not file.seekable():
            return None
        here = file.tell()
        end = file.seek(0, os.SEEK_END)
        file.seek(here)
    except (OSError, ValueError):
        return None
    return end - here


@contextlib.contextmanager
def opened(data: Data, key: str) -> Iterator[Source]:
    """``data`` as a ``Source`` for the length of the block (a path is opened, and closed
    after; a file object given is read from where it is, and left open)."""
    name = key.rsplit("/", 1)[-1]
    if isinstance(data, bytes | bytearray | memoryview):
        content = bytes(data)
        yield Source(content, len(content), name)
    elif isinstance(data, str | os.PathLike):
        path = Path(data)
        with path.open("rb") as file:
            yield Source(file, os.fstat(file.fileno()).st_size, path.name)
    elif hasattr(data, "read"):
        if isinstance(data.read(0), str):
            raise TypeError("open the file in binary mode ('rb'): uploads are bytes")
        yield Source(data, _remaining(data), Path(getattr(data, "name", "") or name).name)
    else:
        raise TypeError(f"upload takes bytes, a path or a binary file (got {type(data).__name__})")


class Counted(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A request body that calls ``progress(sent, total)`` after each chunk of the data is
    handed on (the transport asks for the next chunk once it has written the one before),
    ending at ``(total, total)``; ``before`` and ``after`` (a form's parts) are not counted."""

    def __init__(self, chunks: Iterable[bytes], total: int | None, progress: Progress | None,
                 before: bytes = b"", after: bytes = b"") -> None:  # fmt: skip
        self._chunks, self._total, self._progress = chunks, total, progress
        self._before, self._after = before, after

    def __iter__(self) -> Iterator[bytes]:
        if self._before:
            yield self._before
        sent = 0
        for chunk in self._chunks:
            yield chunk
            sent += len(chunk)
            if self._progress is not None:
                self._progress(sent, self._total)
        if self._after:
            yield self._after

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self:
            yield chunk


def raw(
    method: str, url: str, source: Source, headers: dict[str, str], progress: Progress | None,
    params: dict[str, str] | None = None,
) -> httpx.Request:  # fmt: skip
    """The bytes as the whole body, with their length when known (else chunked)."""
    sized = {"Content-Length": str(source.size)} if source.size is not None else {}
    request = _streaming(method, url, {**headers, **sized}, params)
    request.stream = Counted(source.chunks(), source.size, progress)
    return request


def _streaming(
    method: str, url: str, headers: dict[str, str], params: dict[str, str] | None = None
) -> httpx.Request:
    # A request of streamed content (httpx adds Host, and ``Transfer-Encoding: chunked``
    # unless a Content-Length is given) whose stream the caller then sets: one that is
    # both sync and async, which httpx's own iterator streams are not.
    return httpx.Request(method, url, params=params, headers=headers, content=iter(()))


def _param(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', "%22").replace("\r", "").replace("\n", "")


def form(url: str, fields: dict[str, str], source: Source, content_type: str,
         progress: Progress | None) -> httpx.Request:  # fmt: skip
    """A multipart POST of known length: ``fields`` first, then the ``file`` (S3's presigned
    POST, which needs the length). Written here rather than by httpx, which would rewind a
    file object given part-read."""
    if source.size is None:
        raise ValueError("a presigned upload needs its length: give bytes, a path or a "
                         "seekable file")  # fmt: skip
    boundary = secrets.token_hex(16)
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{_param(name)}"\r\n\r\n'
             f"{value}\r\n" for name, value in fields.items()]  # fmt: skip
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{_param(source.name)}"\r\nContent-Type: {content_type}\r\n\r\n'
    )
    before, after = "".join(parts).encode(), f"\r\n--{boundary}--\r\n".encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}",
               "Content-Length": str(len(before) + source.size + len(after))}  # fmt: skip
    request = _streaming("POST", url, headers)
    request.stream = Counted(source.chunks(), source.size, progress, before, after)
    return request


__all__ = ["CHUNK", "Counted", "Data", "Progress", "Source", "form", "opened", "raw"]
