"""Cutting columns into bounded chunks: at most MAX_CHUNK_POINTS points and MAX_CHUNK_BYTES encoded."""
from __future__ import annotations

from schemas import MAX_CHUNK_BYTES, MAX_CHUNK_POINTS

BYTES_PER_NUMBER = 25  # the longest JSON float (shortest round-trip repr) and its comma


def spans(count: int, columns: int) -> list[slice]:
    """Consecutive slices covering `count` points of `columns` numeric columns, each a bounded chunk.

    >>> spans(5000, 5)
    [slice(0, 4096, None), slice(4096, 5000, None)]
    >>> len(spans(5000, 10))  # MAXI: time, mjd, 4 bands of flux and error -> 2,000 points a chunk
    3
    """
    per_chunk = max(1, min(MAX_CHUNK_POINTS, (MAX_CHUNK_BYTES - 4096) // (BYTES_PER_NUMBER * columns)))
    return [slice(start, min(start + per_chunk, count)) for start in range(0, count, per_chunk)]
