"""Streamed puts in pieces: obstore pulls a streamed put's items from Python one at a time,
each a trip between its runtime and the event loop (~0.25 ms of CPU): an upload arriving in
20 chunks cost 5.8 ms to store instead of 1 as one ``bytes``. So a stream that ends within
one piece is handed over whole, and a longer one in pieces of ``PIECE_BYTES`` (the memory one
streamed put holds)."""

from __future__ import annotations

from collections.abc import AsyncIterator

PIECE_BYTES = 4 * 1024 * 1024


async def in_pieces(chunks: AsyncIterator[bytes]) -> bytes | AsyncIterator[bytes]:
    """The whole stream when it ends within one piece, else the stream in pieces."""

    async def piece() -> tuple[bytes, bool]:  # (the next piece, whether the stream ended)
        parts: list[bytes] = []
        size = 0
        async for chunk in chunks:
            parts.append(chunk)
            size += len(chunk)
            if size >= PIECE_BYTES:
                return b"".join(parts), False
        return b"".join(parts), True

    first, ended = await piece()
    if ended:
        return first

    async def rest() -> AsyncIterator[bytes]:
        yield first
        ended = False
        while not ended:
            data, ended = await piece()
            if data:
                yield data

    return rest()


__all__ = ["PIECE_BYTES", "in_pieces"]
