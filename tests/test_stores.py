"""The store contract, run against every scheme we claim (file, memory, s3 via moto)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

import obstore as obs
import pytest

from pixpipe.config import Settings
from pixpipe.errors import Kind, PixpipeError
from pixpipe.storage import (
    BadKey,
    BadStoreUrl,
    Meta,
    Store,
    open_store,
    open_stores,
    validate_key,
)
from pixpipe.storage.pieces import PIECE_BYTES, in_pieces

FAST = {"max_retries": 0, "retry_timeout": timedelta(seconds=2)}


@pytest.fixture
def store(store_url: str) -> Store:
    return open_store(store_url, retry_config=FAST)  # type: ignore[arg-type]


# --- key rules -----------------------------------------------------------------------------

GOOD_KEYS = ["a", "users/42/IMG 0001.heic", "ü/日本 写真.png", "a+b%2B.jpg", "x" * 1024, "a#b"]
BAD_KEYS = [
    ("", "1-1024 bytes"),
    ("é" * 513, "1-1024 bytes"),
    ("/abs.jpg", "start with '/'"),
    ("a/../b.jpg", "'..' path segment"),
    ("./b.jpg", "'.' path segment"),
    ("a//b.jpg", "empty path segment"),
    ("dir/", "empty path segment"),
    ("a\\b.jpg", "backslash"),
    ("tab\there.jpg", "control characters"),
    ("nul\x00.jpg", "control characters"),
    ("photo.jpg#1", "'#' + digits"),
    ("bad\udcff.jpg", "UTF-8"),
]


@pytest.mark.parametrize("key", GOOD_KEYS)
def test_good_keys_pass(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize(("key", "message"), BAD_KEYS)
def test_bad_keys_are_rejected_with_a_pointed_message(key: str, message: str) -> None:
    with pytest.raises(BadKey, match=message.replace("+", r"\+")):
        validate_key(key)
    assert issubclass(BadKey, ValueError)


@pytest.mark.parametrize("url", ["ftp://x/y", "bucket/prefix", "http://example.com/x"])
def test_unknown_schemes_are_rejected(url: str) -> None:
    with pytest.raises(BadStoreUrl, match="store URL must start with"):
        open_store(url)


# --- the contract, on every scheme ---------------------------------------------------------


async def test_put_get_head(store: Store) -> None:
    key = "users/42/IMG 0001.jpg"
    etag = await store.put(key, b"hello world", content_type="image/jpeg")
    assert await store.get(key) == b"hello world"
    meta = await store.head(key)
    assert meta is not None
    assert (meta.key, meta.size, meta.etag, meta.content_type) == (key, 11, etag, "image/jpeg")
    assert meta.last_modified.tzinfo is not None
    assert await store.exists(key)
    assert await store.get_range(key, 6, 11) == b"world"
    download = await store.open(key)  # the body at once (the worker's read of an original)
    assert (download.meta.etag, await download.whole()) == (etag, b"hello world")


async def test_overwrite_changes_the_etag(store: Store) -> None:
    first = await store.put("k.jpg", b"one")
    second = await store.put("k.jpg", b"two, longer")
    assert first != second
    assert await store.get("k.jpg") == b"two, longer"


@pytest.mark.parametrize("key", ["users/42/IMG 0001.heic", "ü/日本 写真.png", "a+b%2B.jpg"])
async def test_spaces_unicode_and_plus_survive_the_round_trip(store: Store, key: str) -> None:
    await store.put(key, b"x")
    assert await store.get(key) == b"x"
    keys = [m.key async for page in store.list() for m in page]
    assert keys == [key]


async def test_missing_object_is_kind_missing(store: Store) -> None:
    with pytest.raises(PixpipeError) as err:
        await store.get("nope/none.jpg")
    assert err.value.kind is Kind.MISSING
    assert await store.head("nope/none.jpg") is None
    assert not await store.exists("nope/none.jpg")
    with pytest.raises(PixpipeError, match="missing"):
        await store.open("nope/none.jpg")


async def test_delete_is_idempotent(store: Store) -> None:
    await store.put("a/b.jpg", b"x")
    await store.delete("a/b.jpg")
    await store.delete("a/b.jpg")
    assert await store.head("a/b.jpg") is None


async def test_bad_keys_never_reach_the_backend(store: Store) -> None:
    for call in (store.get("../x"), store.put("/x", b""), store.head("a//b"), store.delete("")):
        with pytest.raises(BadKey):
            await call


async def test_list_pages_of_seven_over_fifty_keys(store: Store) -> None:
    await asyncio.gather(*(store.put(f"p/{i:02d}.jpg", b"x" * i) for i in range(50)))
    await store.put("other/x.jpg", b"x")
    pages = [page async for page in store.list("p/", page_size=7)]
    assert [len(p) for p in pages] == [7] * 7 + [1]
    listed = sorted(m.key for p in pages for m in p)
    assert listed == [f"p/{i:02d}.jpg" for i in range(50)]
    assert {m.size for p in pages for m in p} == set(range(50))


async def test_list_prefix_is_a_plain_string_prefix(store: Store) -> None:
    for key in ("users/42/a.jpg", "users/4/b.jpg", "users/5/c.jpg", "usersX.jpg"):
        await store.put(key, b"x")

    async def keys(prefix: str) -> list[str]:
        return sorted([m.key async for page in store.list(prefix) for m in page])

    assert await keys("users/4") == ["users/4/b.jpg", "users/42/a.jpg"]
    assert await keys("users/") == ["users/4/b.jpg", "users/42/a.jpg", "users/5/c.jpg"]
    assert len(await keys("")) == 4
    assert await keys("none/") == []


async def test_streaming_open_whole_and_range(store: Store) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB, several chunks
    await store.put("big.bin", data, content_type="application/octet-stream")
    whole = await store.open("big.bin")
    assert whole.meta.size == len(data)
    assert whole.range == (0, len(data))
    assert b"".join([c async for c in whole.chunks]) == data
    part = await store.open("big.bin", start=100, end=200)
    assert part.range == (100, 200)
    assert b"".join([c async for c in part.chunks]) == data[100:200]
    tail = await store.open("big.bin", start=len(data) - 10)
    assert b"".join([c async for c in tail.chunks]) == data[-10:]


@pytest.mark.parametrize("size", [10, 9 * 1024 * 1024])  # one request / streamed in parts
async def test_copy_to_another_store(store: Store, tmp_path: Path, size: int) -> None:
    data = b"\xff\xd8" + b"j" * (size - 2)
    await store.put("users/1/a b.jpg", data, content_type="image/jpeg", cache_control="no-cache")
    backup = open_store(f"file://{tmp_path / 'backup'}")
    await store.copy_to(backup, "users/1/a b.jpg")
    assert await backup.get("users/1/a b.jpg") == data
    assert (tmp_path / "backup" / "users" / "1" / "a b.jpg").stat().st_size == size
    other = open_store(f"memory://copy-{id(store)}-{size}")
    await store.copy_to(other, "users/1/a b.jpg", "q/users/1/a b.jpg")
    meta = await other.head("q/users/1/a b.jpg")
    assert meta is not None and meta.size == size and meta.content_type == "image/jpeg"


async def test_a_linked_backup_shares_the_file_and_keeps_its_bytes(tmp_path: Path) -> None:
    """``copy_to(link=True)`` between two local stores makes a hard link (the backup costs no
    bytes), and a later upload or a delete of the original never changes what the backup
    holds: obstore replaces files by rename, never in place. Where links cannot be made
    (another file system: /dev/shm is tmpfs), it copies; a symbolic link on the backup's
    side is refused like anywhere else; a missing original is ``missing``."""
    originals = open_store(f"file://{tmp_path / 'originals'}")
    backup = open_store(f"file://{tmp_path / 'backup'}")
    first, second = b"\xff\xd8first", b"\xff\xd8second"
    await originals.put("u/a b.jpg", first)
    etag = await originals.copy_to(backup, "u/a b.jpg", link=True)
    source, copy = tmp_path / "originals" / "u" / "a b.jpg", tmp_path / "backup" / "u" / "a b.jpg"
    assert source.stat().st_ino == copy.stat().st_ino, "copied, not linked"
    assert etag == (await backup.head("u/a b.jpg")).etag and await backup.get("u/a b.jpg") == first
    assert not [p.name for p in copy.parent.iterdir() if p.name != "a b.jpg"], "staging left"
    await originals.put("u/a b.jpg", second)  # a new upload of the key
    assert await backup.get("u/a b.jpg") == first
    await originals.copy_to(backup, "u/a b.jpg", link=True)
    await originals.delete("u/a b.jpg")
    assert await backup.get("u/a b.jpg") == second
    with pytest.raises(PixpipeError) as missing:
        await originals.copy_to(backup, "u/a b.jpg", link=True)
    assert missing.value.kind is Kind.MISSING

    elsewhere = Path("/dev/shm") / f"pixpipe-backup-{tmp_path.name}"
    try:
        await originals.put("b.jpg", first)
        await originals.copy_to(open_store(f"file://{elsewhere}"), "b.jpg", link=True)
        assert (elsewhere / "b.jpg").read_bytes() == first
        linked = (tmp_path / "originals" / "b.jpg").stat().st_ino
        assert (elsewhere / "b.jpg").stat().st_ino != linked
    finally:
        shutil.rmtree(elsewhere, ignore_errors=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "backup" / "linked").symlink_to(tmp_path / "outside", target_is_directory=True)
    with pytest.raises(PixpipeError):
        await originals.copy_to(backup, "b.jpg", "linked/b.jpg", link=True)
    assert not list((tmp_path / "outside").iterdir())


@pytest.mark.parametrize("link", [False, True])
async def test_a_copy_unless_judges_the_source_it_reads(
    store: Store, tmp_path: Path, link: bool
) -> None:
    """``copy_to(unless=...)`` is given the source's metadata (from the copy's own read, or
    the file's for a link) and copies nothing when it holds; a missing source is ``missing``
    before it is judged."""
    data = b"\xff\xd8" + b"u" * 1000
    await store.put("u/a.jpg", data)
    backup = open_store(f"file://{tmp_path / 'backup'}")
    seen: list[int] = []

    def judge(answer: bool) -> Callable[[Meta], bool]:
        return lambda meta: seen.append(meta.size) or answer

    assert await store.copy_to(backup, "u/a.jpg", link=link, unless=judge(True)) is None
    assert await backup.head("u/a.jpg") is None and seen == [len(data)]
    assert await store.copy_to(backup, "u/a.jpg", link=link, unless=judge(False)) is not None
    assert await backup.get("u/a.jpg") == data and seen == [len(data)] * 2
    with pytest.raises(PixpipeError) as missing:
        await store.copy_to(backup, "gone.jpg", link=link, unless=judge(True))
    assert missing.value.kind is Kind.MISSING and len(seen) == 2


async def test_copy_of_a_missing_object_is_kind_missing(store: Store) -> None:
    with pytest.raises(PixpipeError) as err:
        await store.copy_to(open_store("memory://copy-target"), "gone.jpg")
    assert err.value.kind is Kind.MISSING


async def test_content_type_defaults_from_the_extension(store: Store) -> None:
    await store.put("a/photo.webp", b"x")
    meta = await store.head("a/photo.webp")
    assert meta is not None and meta.content_type == "image/webp"


# --- per-backend behaviour -----------------------------------------------------------------


async def test_s3_keeps_content_type_and_cache_control(aws_env: object) -> None:
    from tests.conftest_services import MotoS3

    assert isinstance(aws_env, MotoS3)
    store = open_store(f"s3://{aws_env.bucket}/meta-test")
    await store.put(
        "v/IMG 1.jpg", b"x", content_type="image/jpeg", cache_control="public, max-age=9"
    )
    head = aws_env.client().head_object(Bucket=aws_env.bucket, Key="meta-test/v/IMG 1.jpg")
    assert head["ContentType"] == "image/jpeg"
    assert head["CacheControl"] == "public, max-age=9"
    download = await store.open("v/IMG 1.jpg")
    assert download.meta.content_type == "image/jpeg"
    assert b"".join([c async for c in download.chunks]) == b"x"


async def test_s3_endpoint_down_is_transient_and_fails_fast(
    aws_env: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once we leave: nothing listens there
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    store = open_store(
        "s3://pixpipe-test/x",
        client_options={"connect_timeout": timedelta(seconds=1)},
        retry_config=FAST,  # type: ignore[arg-type]
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    for call in (store.get("a.jpg"), store.put("a.jpg", b"x"), store.head("a.jpg")):
        with pytest.raises(PixpipeError) as err:
            await call
        assert err.value.kind is Kind.TRANSIENT
    with pytest.raises(PixpipeError, match="transient"):
        [page async for page in store.list()]
    assert loop.time() - started < 10


async def test_local_put_is_atomic_for_readers(tmp_path: Path) -> None:
    """obstore's local store writes `{key}#N` then renames: a reader sees old or new."""
    store = open_store(f"file://{tmp_path}")
    old, new = b"o" * (4 * 1024 * 1024), b"n" * (6 * 1024 * 1024)
    await store.put("x.bin", old)
    seen: set[int] = set()

    async def read_while_writing() -> None:
        for _ in range(30):
            seen.add(len(await store.get("x.bin")))
            await asyncio.sleep(0)

    await asyncio.gather(read_while_writing(), store.put("x.bin", new), read_while_writing())
    assert seen <= {len(old), len(new)}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.bin"]  # no staging leftovers


def test_relative_file_url_is_made_absolute_and_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("file://./data/originals")
    assert store.local_root == tmp_path / "data" / "originals"
    assert store.local_root.is_dir()


def test_same_memory_url_is_the_same_store() -> None:
    assert open_store("memory://shared").inner is open_store("memory://shared").inner
    assert open_store("memory://one").inner is not open_store("memory://two").inner


def test_gcs_store_opens_without_network() -> None:
    assert open_store("gs://bucket/prefix").url == "gs://bucket/prefix"


def test_open_stores_defaults_to_folders_under_data_dir(tmp_path: Path) -> None:
    stores = open_stores(Settings(data_dir=tmp_path, stores={"cache": "memory://cache-x"}))
    assert stores.originals.local_root == tmp_path / "originals"
    assert stores.quarantine.local_root == tmp_path / "quarantine"
    assert stores.cache.url == "memory://cache-x"
    assert len(list(stores)) == 5


async def test_a_file_name_too_long_for_a_local_store_is_a_bad_key(tmp_path: Path) -> None:
    local = open_store(f"file://{tmp_path}")
    key = "users/" + "é" * 130 + ".jpg"  # 264 bytes in one segment: no file system takes it
    with pytest.raises(BadKey, match="at most 255 bytes"):
        await local.put(key, b"x")
    with pytest.raises(BadKey, match="at most 255 bytes"):
        await local.get(key)
    memory = open_store("memory://long-names")
    await memory.put(key, b"x")  # elsewhere the key rules alone apply
    assert await memory.get(key) == b"x"


async def test_a_local_store_never_follows_a_symbolic_link(tmp_path: Path) -> None:
    """A link dropped into the originals folder must not serve (or overwrite) what lies
    outside it: the data dir's api-key, say."""
    secret = tmp_path / "api-key"
    secret.write_text("not for the world")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "x.jpg").write_bytes(b"outside")
    store = open_store(f"file://{tmp_path / 'originals'}")
    root = tmp_path / "originals"
    (root / "leak.jpg").symlink_to(secret)
    (root / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    await store.put("real.jpg", b"inside")
    for key in ("leak.jpg", "linked/x.jpg"):
        assert await store.head(key) is None and not await store.exists(key)
        with pytest.raises(PixpipeError) as caught:
            await store.get(key)
        assert caught.value.kind is Kind.MISSING
        with pytest.raises(PixpipeError):
            await store.put(key, b"overwrite")
    assert secret.read_text() == "not for the world"
    assert (tmp_path / "elsewhere" / "x.jpg").read_bytes() == b"outside"
    listed = [m.key async for page in store.list() for m in page]
    assert listed == ["real.jpg"]


async def test_a_local_listing_survives_a_link_to_a_parent_folder(tmp_path: Path) -> None:
    """obstore's own listing follows links and fails on a loop ("points to an ancestor"):
    the folder watcher's start-up scan and every backfill would fail with it."""
    store = open_store(f"file://{tmp_path / 'originals'}")
    await store.put("a.jpg", b"one")
    await store.put("sub/deeper/b.jpg", b"two")
    root = tmp_path / "originals"
    (root / "sub" / "up").symlink_to(root, target_is_directory=True)
    (root / "self").symlink_to(root / "sub", target_is_directory=True)
    listed = [m async for page in store.list(page_size=1) for m in page]
    assert [m.key for m in listed] == ["a.jpg", "sub/deeper/b.jpg"]
    heads = [await store.head(m.key) for m in listed]
    assert [(m.etag, m.size) for m in listed] == [(h.etag, h.size) for h in heads if h]
    assert [m.key async for page in store.list("sub/") for m in page] == ["sub/deeper/b.jpg"]


async def test_a_local_store_keeps_its_folder_out_of_failure_messages(tmp_path: Path) -> None:
    """Failures are listed over HTTP (``GET /v1/failures``): no absolute path in them."""
    store = open_store(f"file://{tmp_path / 'originals'}")
    with pytest.raises(PixpipeError) as caught:
        await store.get("users/42/gone.jpg")
    assert caught.value.kind is Kind.MISSING
    assert "users/42/gone.jpg" in caught.value.message
    assert str(tmp_path) not in caught.value.message


async def test_a_local_head_is_what_obstore_reports(tmp_path: Path) -> None:
    """A local store answers heads from one ``stat``: the same size, etag and time as
    obstore's own head, and nothing for a folder or a path through a file."""
    store = open_store(f"file://{tmp_path}")
    etag = await store.put("a/b.jpg", b"x" * 1234)
    raw = (await obs.get_async(store.inner, "a/b.jpg", options={"head": True})).meta
    meta = await store.head("a/b.jpg")
    assert meta is not None
    assert (meta.size, meta.etag, meta.last_modified) == (1234, etag, raw["last_modified"])
    assert meta.etag == raw["e_tag"].strip('"')
    assert await store.head("a") is None and await store.head("a/b.jpg/c") is None


async def test_a_streamed_put_reaches_the_store_in_pieces(tmp_path: Path) -> None:
    """A short stream is handed over whole, a long one in pieces of ``PIECE_BYTES`` (obstore
    pulls each item through the event loop); the bytes stored are the bytes sent."""
    data = bytes(range(256)) * (9 * 1024 * 1024 // 256 + 7)

    async def chunks(body: bytes, size: int = 65536) -> AsyncIterator[bytes]:
        for at in range(0, len(body), size):
            yield body[at : at + size]

    assert await in_pieces(chunks(data[:100_000])) == data[:100_000]
    streamed = await in_pieces(chunks(data))
    assert not isinstance(streamed, bytes)
    pieces = [piece async for piece in streamed]
    assert [len(p) >= PIECE_BYTES for p in pieces] == [True, True, False]
    assert b"".join(pieces) == data
    store = open_store(f"file://{tmp_path}")
    await store.put("big.jpg", chunks(data))
    await store.put("small.jpg", chunks(data[:5000], 700))
    assert await store.get("big.jpg") == data and await store.get("small.jpg") == data[:5000]


async def test_a_local_put_is_what_obstore_reads(tmp_path: Path) -> None:
    """A local store writes its files itself (``storage/local.py``): obstore reads them back
    with the etag the put returned, a new folder is made, the mode is the umask's, and each
    put of the same bytes is a new version (a new etag), as obstore's own put is."""
    store = open_store(f"file://{tmp_path}")
    etag = await store.put("new/folder/a.jpg", b"abc" * 1000)
    raw = await obs.get_async(store.inner, "new/folder/a.jpg")
    assert raw.meta["e_tag"].strip('"') == etag and bytes(await raw.bytes_async()) == b"abc" * 1000
    assert await store.put("new/folder/a.jpg", b"abc" * 1000) != etag
    mode = (tmp_path / "new/folder/a.jpg").stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask
    # obstore's own put of the key is read the same way
    theirs = (await obs.put_async(store.inner, "new/folder/b.jpg", b"xyz"))["e_tag"].strip('"')
    assert (await store.head("new/folder/b.jpg")).etag == theirs


async def test_a_failing_stream_leaves_the_old_file_and_no_staging(tmp_path: Path) -> None:
    """A stream that breaks off (a client gone, a body over the limit) writes nothing: the
    file before it is whole, and no staging file is left for a listing or the watcher."""
    store = open_store(f"file://{tmp_path}")
    await store.put("k/a.jpg", b"old")

    async def broken() -> AsyncIterator[bytes]:
        yield b"new" * 1000
        raise ConnectionResetError("client went away")

    with pytest.raises(PixpipeError) as caught:
        await store.put("k/a.jpg", broken())
    assert caught.value.kind is Kind.TRANSIENT
    assert await store.get("k/a.jpg") == b"old"
    assert sorted(p.name for p in (tmp_path / "k").iterdir()) == ["a.jpg"]
    assert [m.key for page in [p async for p in store.list()] for m in page] == ["k/a.jpg"]
