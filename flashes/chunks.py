"""Chunks of the data topics, built in one place: columns cut into bounded parts under one header.

A chunk holds at most MAX_CHUNK_POINTS points and stays under MAX_CHUNK_BYTES encoded
(schemas.Chunk). `build` cuts the points of one series into such chunks and fills the header fields
that follow from the columns (first_mjd, last_mjd, count, and the µs times unless given); the
fetcher, derive, relevance and the tests all make their chunks with it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

import schemas
from flashes.timeconv import mjd_to_unix_us
from schemas import MAX_CHUNK_BYTES, MAX_CHUNK_POINTS

BYTES_PER_NUMBER = 25  # the longest JSON float (shortest round-trip repr) and its comma

Column = np.ndarray | Sequence[float]
Columns = Mapping[str, Column | Mapping[str, Column]]  # a column, or a group of them (flux per band, the terms)
C = TypeVar("C", bound=schemas.Chunk)


def spans(count: int, columns: int) -> list[slice]:
    """Consecutive slices covering `count` points of `columns` numeric columns, each a bounded chunk.

    >>> spans(5000, 5)
    [slice(0, 4096, None), slice(4096, 5000, None)]
    >>> len(spans(5000, 10))  # MAXI: time, mjd, 4 bands of flux and error -> 2,000 points a chunk
    3
    """
    per_chunk = max(1, min(MAX_CHUNK_POINTS, (MAX_CHUNK_BYTES - 4096) // (BYTES_PER_NUMBER * columns)))
    return [slice(start, min(start + per_chunk, count)) for start in range(0, count, per_chunk)]


def build(contract: type[C], mjd: Column, columns: Columns, time: Column | None = None, **header: Any) -> list[C]:
    """The points of one series (`mjd` in time order, every column aligned with it) as bounded chunks of
    `contract`. `header` holds the fields every point shares (source_id, instrument or kind, units...);
    `time` (µs since 1970) is computed from `mjd` unless given.

    >>> days = 58000.5 + np.arange(5000)
    >>> chunks = build(schemas.DerivedChunk, days, dict.fromkeys(("value", "error", "swift_flux", "swift_error",
    ...                "maxi_flux", "maxi_error"), np.ones(5000)), source_id="gx339-4", kind="combined", units="mCrab")
    >>> [(c.count, c.first_mjd, c.last_mjd) for c in chunks]
    [(2600, 58000.5, 60599.5), (2400, 60600.5, 62999.5)]
    """
    mjd = np.asarray(mjd)
    arrays: dict[str, np.ndarray | dict[str, np.ndarray]] = {
        "time": mjd_to_unix_us(mjd) if time is None else np.asarray(time),
        "mjd": mjd,
    }
    for name, column in columns.items():
        arrays[name] = (
            {key: np.asarray(c) for key, c in column.items()} if isinstance(column, Mapping) else np.asarray(column)
        )
    numbers = sum(len(a) if isinstance(a, dict) else 1 for a in arrays.values())
    out = []
    for part in spans(len(mjd), numbers):
        values = {
            name: {key: c[part].tolist() for key, c in a.items()} if isinstance(a, dict) else a[part].tolist()
            for name, a in arrays.items()
        }
        points = mjd[part]
        out.append(
            contract(**header, **values, first_mjd=float(points[0]), last_mjd=float(points[-1]), count=len(points))
        )
    return out
