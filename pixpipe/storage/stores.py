"""One store, as the pipeline uses it: obstore plus pixpipe's key rules, error kinds and the
few conveniences it needs (streaming reads, atomic puts, paged lists, copies). ``urls.py``
opens stores from their URLs.

Atomic writes come from the backends themselves: obstore's local store writes to a staging
file (``{key}#1``) and renames it into place, and an S3 PUT (or a multipart upload's final
CompleteMultipartUpload) makes the whole object visible at once. Readers never see half a file.
"""

from __future__ import annotations

import asyncio
import mimetypes
import os
import re
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import obstore as obs
from obstore.exceptions import BaseError as ObstoreError
from obstore.store import LocalStore

from ..errors import Kind, PixpipeError
from .keys import MAX_KEY_BYTES, BadKey, validate_key
from .local import hard_link, put_file, stat_head
from .pieces import in_pieces

if TYPE_CHECKING:
    from obstore.store import ObjectStore


STORE_NAMES = ("originals", "variants", "backup", "quarantine", "cache")
# Whole objects up to this size are copied in one request; larger ones stream in parts.
_STREAM_THRESHOLD = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Meta:
    """What a store knows about one object (``content_type`` is ``None`` when unknown)."""

    key: str
    size: int
    etag: str | None
    last_modified: datetime
    content_type: str | None = None


@dataclass(frozen=True, slots=True)
class Download:
    """A streaming read: the object's metadata, the byte range served, and the chunks, or
    (before any is read) ``whole()``: the body in one trip through obstore's runtime."""

    meta: Meta
    range: tuple[int, int]  # [start, end) actually returned
    chunks: AsyncIterator[bytes]
    whole: Callable[[], Awaitable[bytes]]


def _error(exc: BaseException, what: str, root: Path | None = None) -> PixpipeError:
    """Map an obstore/OS failure to our kinds: gone → missing, anything else → transient.
    A local store's folder is left out of the message (failures are listed over HTTP)."""
    if isinstance(exc, FileNotFoundError):
        return PixpipeError(Kind.MISSING, f"{what}: not found")
    detail = str(exc).split("\n", 1)[0]
    if root is not None:
        detail = detail.replace(str(root), "…")
    return PixpipeError(Kind.TRANSIENT, f"{what}: {type(exc).__name__}: {detail}")


_MAPPED = (ObstoreError, OSError, TimeoutError)
NAME_MAX = 255  # bytes in one file name, on every common local file system


def _guess_type(key: str) -> str | None:
    return mimetypes.guess_type(key, strict=False)[0]


def bare_etag(etag: str | None) -> str | None:
    """An etag without the quotes HTTP and S3 put around it: the one form pixpipe keeps
    (compared, stored in state, put in message ids); quoted again only in HTTP headers."""
    return etag.strip('"') or None if etag else None


def _meta(raw: Any, key: str, content_type: str | None = None) -> Meta:
    return Meta(key, raw["size"], bare_etag(raw["e_tag"]), raw["last_modified"], content_type)


@dataclass(frozen=True, slots=True)
class Store:
    """One obstore store opened from a URL; keys are validated on every call."""

    url: str
    inner: ObjectStore
    # The folder behind a ``file://`` store (for watching dropped files), else ``None``.
    local_root: Path | None = field(init=False)

    def __post_init__(self) -> None:
        local = isinstance(self.inner, LocalStore) and self.inner.prefix is not None
        object.__setattr__(self, "local_root", Path(self.inner.prefix) if local else None)

    def local_path(self, key: str) -> Path | None:
        """Where ``key`` lives in a local store (checked like every key), else ``None``."""
        return self.local_root / self._check(key) if self.local_root is not None else None

    @property
    def has_attributes(self) -> bool:
        """Whether the backend keeps Content-Type/Cache-Control (all but local files)."""
        return not isinstance(self.inner, LocalStore)

    def _where(self, key: str) -> str:
        """Where ``key`` is, for messages: a local store's folder is not told."""
        if self.local_root is not None:
            return f"file://…/{key}"
        return f"{self.url.rstrip('/')}/{key}"

    def _failure(self, exc: BaseException, what: str) -> PixpipeError:
        return _error(exc, what, self.local_root)

    def _check(self, key: str) -> str:
        """The key rules, plus the file system's own for a local store: no path segment over
        255 bytes (a file name could not hold it; it is a bad key, not a storage failure), and
        no symbolic link on the way (a link dropped into the originals folder must not serve
        or overwrite what lies outside it, the data dir's ``api-key`` say): ``missing``."""
        validate_key(key)
        if isinstance(self.inner, LocalStore):
            for segment in key.split("/"):
                if len(segment.encode()) > NAME_MAX:
                    raise BadKey(
                        f"key segments must be at most {NAME_MAX} bytes in a local store "
                        f"(got {len(segment.encode())})"
                    )
            if self._linked(key):
                raise PixpipeError(Kind.MISSING, f"{key}: a symbolic link, never followed")
        return key

    def _linked(self, key: str) -> bool:
        """Whether any part of ``key``'s path in a local store is a symbolic link."""
        if self.local_root is None:
            return False
        path = str(self.local_root)
        for segment in key.split("/"):
            path = f"{path}/{segment}"
            try:
                if stat.S_ISLNK(os.lstat(path).st_mode):
                    return True
            except (FileNotFoundError, NotADirectoryError):
                return False  # nothing there, so no link further down either
        return False

    async def get(self, key: str) -> bytes:
        """The whole object; ``PixpipeError`` kind ``missing`` if there is none."""
        self._check(key)
        try:
            result = await obs.get_async(self.inner, key)
            return bytes(await result.bytes_async())
        except _MAPPED as exc:
            raise self._failure(exc, f"get {self._where(key)}") from exc

    async def get_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``[start, end)``; a range past the end returns what there is."""
        self._check(key)
        try:
            return bytes(await obs.get_range_async(self.inner, key, start=start, end=end))
        except _MAPPED as exc:
            raise self._failure(exc, f"get {self._where(key)} [{start}:{end}]") from exc

    async def open(self, key: str, *, start: int | None = None, end: int | None = None) -> Download:
        """Start a streaming read (whole object, or ``[start, end)``) for HTTP delivery."""
        self._check(key)
        options: dict[str, Any] = {}
        if start is not None:
            options["range"] = (start, end) if end is not None else {"offset": start}
        elif end is not None:
            options["range"] = (0, end)
        where = self._where(key)
        try:
            result = await obs.get_async(self.inner, key, options=options or None)  # type: ignore[arg-type]
        except _MAPPED as exc:
            raise self._failure(exc, f"get {where}") from exc
        content_type = result.attributes.get("Content-Type") or _guess_type(key)
        chunks = _reading(lambda: result.stream(min_chunk_size=256 * 1024), where)

        async def whole() -> bytes:
            try:
                return bytes(await result.bytes_async())
            except _MAPPED as exc:
                raise self._failure(exc, f"read {where}") from exc

        return Download(_meta(result.meta, key, content_type), result.range, chunks, whole)

    async def head(self, key: str) -> Meta | None:
        """The object's metadata, or ``None`` if there is none."""
        try:
            self._check(key)
        except PixpipeError:  # a symbolic link: nothing there, as far as anyone is told
            return None
        if self.local_root is not None:  # one stat, not a trip through obstore's runtime
            found = stat_head(self.local_root, key)
            return Meta(key, *found, _guess_type(key)) if found else None
        try:
            # A GET with `head` returns the attributes (Content-Type), a plain HEAD does not.
            result = await obs.get_async(self.inner, key, options={"head": True})
        except FileNotFoundError:
            return None
        except _MAPPED as exc:
            raise self._failure(exc, f"head {self._where(key)}") from exc
        content_type = result.attributes.get("Content-Type") or _guess_type(key)
        return _meta(result.meta, key, content_type)

    async def exists(self, key: str) -> bool:
        """Whether there is an object at ``key``."""
        return await self.head(key) is not None

    async def put(
        self,
        key: str,
        data: bytes | memoryview | AsyncIterator[bytes],
        *,
        content_type: str | None = None,
        cache_control: str | None = None,
    ) -> str | None:
        """Write an object atomically (readers see the old one or the new one); return its etag.

        ``content_type`` defaults to a guess from the key's extension; both it and
        ``cache_control`` are kept as object metadata where the backend has any (not local).
        """
        self._check(key)
        attributes: dict[str, str] = {}
        if self.has_attributes:
            if content_type := content_type or _guess_type(key):
                attributes["Content-Type"] = content_type
            if cache_control:
                attributes["Cache-Control"] = cache_control
        try:
            if self.local_root is not None:  # straight to the page cache, not through obstore
                return await put_file(self.local_root, key, data)
            if not isinstance(data, bytes | memoryview):
                data = await in_pieces(data)
            result = await obs.put_async(self.inner, key, data, attributes=attributes or None)
        except _MAPPED as exc:
            raise self._failure(exc, f"put {self._where(key)}") from exc
        return bare_etag(result["e_tag"])

    async def delete(self, key: str) -> None:
        """Delete an object; deleting one that is not there is not an error."""
        self._check(key)
        try:
            await obs.delete_async(self.inner, key)
        except FileNotFoundError:
            pass
        except _MAPPED as exc:
            raise self._failure(exc, f"delete {self._where(key)}") from exc

    async def list(self, prefix: str = "", page_size: int = 1000) -> AsyncIterator[list[Meta]]:
        """Pages of up to ``page_size`` objects whose key starts with ``prefix`` (a plain string
        prefix, as on S3: ``users/4`` matches ``users/42/a.jpg``). Nothing is loaded at once."""
        if page_size < 1:
            raise ValueError(f"page_size must be at least 1 (got {page_size})")
        # obstore matches whole path segments only, so list the enclosing folder and filter.
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        root = self.local_root
        stream: Any = (
            obs.list(self.inner, folder or None, chunk_size=page_size) if root is None
            else _walk(self.inner, root, folder, page_size)
        )  # fmt: skip
        page: list[Meta] = []
        try:
            async for chunk in stream:
                for raw in chunk:
                    if raw["path"].startswith(prefix):
                        page.append(_meta(raw, raw["path"]))
                while len(page) >= page_size:
                    yield page[:page_size]
                    page = page[page_size:]
        except _MAPPED as exc:
            raise self._failure(exc, f"list {self._where(prefix)}") from exc
        if page:
            yield page

    async def copy_to(
        self,
        other: Store,
        key: str,
        dest_key: str | None = None,
        *,
        link: bool = False,
        unless: Callable[[Meta], bool] | None = None,
    ) -> str | None:
        """Copy one object into another store (backup, quarantine), streaming big ones.

        Keeps Content-Type and Cache-Control; returns the new etag. ``link``: between two
        local stores on one file system, a hard link instead of a copy (the backup's, which
        then costs no bytes). Safe because no file is ever rewritten in place: obstore writes
        a staging file and renames it over the old one. The link has the original's etag, so
        it is not for a copy that must come out as a new version. ``unless``: no copy (and
        ``None``) when it is true of the source's metadata, read with the copy's own request.
        """
        dest_key = self._check(dest_key or key)
        self._check(key)
        where = self._where(key)
        if link and self.local_root is not None and other.local_root is not None:
            other._check(dest_key)
            if unless is not None:
                if (source := await self.head(key)) is None:
                    raise PixpipeError(Kind.MISSING, f"copy {where}: not found")
                if unless(source):
                    return None
            try:
                hard_link(self.local_root / key, other.local_root / dest_key)
            except FileNotFoundError as exc:
                raise self._failure(exc, f"copy {where}") from exc
            except OSError:
                pass  # another file system, or no links on it: copied below
            else:
                meta = await other.head(dest_key)
                return meta.etag if meta else None
        try:
            result = await obs.get_async(self.inner, key)
        except _MAPPED as exc:
            raise self._failure(exc, f"copy {where}") from exc
        if unless is not None and unless(_meta(result.meta, key)):
            return None  # the body is never read
        attributes = result.attributes
        data: bytes | AsyncIterator[bytes]
        if result.meta["size"] <= _STREAM_THRESHOLD:
            try:
                data = bytes(await result.bytes_async())
            except _MAPPED as exc:
                raise self._failure(exc, f"copy {where}") from exc
        else:
            data = _reading(result.stream, where)
        return await other.put(
            dest_key,
            data,
            content_type=attributes.get("Content-Type"),
            cache_control=attributes.get("Cache-Control"),
        )


# obstore's staging files of a write under way (``name#3``), which its own listing skips.
_STAGING = re.compile(r"#\d+$")


def _scan(folder: Path) -> tuple[list[str], list[str]]:
    """The sub-folders and files of one folder, symbolic links left out (never followed)."""
    folders, files = [], []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    folders.append(entry.name)
                elif entry.is_file(follow_symlinks=False) and not _STAGING.search(entry.name):
                    files.append(entry.name)
    except (FileNotFoundError, NotADirectoryError):
        pass  # gone (or never made) meanwhile: nothing in it
    return sorted(folders), sorted(files)


async def _walk(
    inner: Any, root: Path, folder: str, chunk_size: int
) -> AsyncIterator[list[dict[str, Any]]]:
    """A local store's objects under ``folder``, folder by folder, as obstore lists them
    (its metadata and etags), never through a symbolic link: obstore's own listing follows
    links, and a link to a parent folder makes it fail on a loop."""
    pending = [folder]
    while pending:
        here = pending.pop()
        folders, files = await asyncio.to_thread(_scan, root / here if here else root)
        pending.extend(f"{here}/{name}" if here else name for name in reversed(folders))
        keys = [f"{here}/{name}" if here else name for name in files]
        for start in range(0, len(keys), chunk_size):
            heads = [obs.head_async(inner, key) for key in keys[start : start + chunk_size]]
            found = await asyncio.gather(*heads, return_exceptions=True)
            if errors := [e for e in found if isinstance(e, BaseException)
                          and not isinstance(e, FileNotFoundError)]:  # fmt: skip
                raise errors[0]
            chunk = [m for m in found if not isinstance(m, BaseException)]  # deleted meanwhile
            if chunk:
                yield chunk


async def _reading(stream: Callable[[], AsyncIterator[Any]], where: str) -> AsyncIterator[bytes]:
    try:  # the stream is made at the first read: until then ``whole()`` may take the body
        async for chunk in stream():
            yield bytes(chunk)
    except _MAPPED as exc:
        raise _error(exc, f"read {where}") from exc


__all__ = ["MAX_KEY_BYTES", "STORE_NAMES", "Download", "Meta", "Store", "bare_etag"]
