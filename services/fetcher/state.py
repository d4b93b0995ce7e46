"""Incremental fetching: what each series has published, kept in a compacted Kafka topic.

A row's digest hashes its flux, error and flag values, so a point the provider revises (same
time, new values) is published again while unchanged points are not.
"""

from __future__ import annotations

import base64
import json
import zlib

import numpy as np
from aiokafka import TopicPartition

import schemas
from flashes import kafka, topics
from flashes.parsers import ParsedLightcurve
from flashes.settings import Settings

_PRIMES = np.array(
    [
        0x9E3779B97F4A7C15,
        0xC2B2AE3D27D4EB4F,
        0x165667B19E3779F9,
        0xD6E8FEB86659FD93,
        0xFF51AFD7ED558CCD,
        0xC4CEB9FE1A85EC53,
        0x94D049BB133111EB,
        0xBF58476D1CE4E5B9,
        0x2545F4914F6CDD1D,
        0x9FB21C651E98DF25,
    ],
    dtype=np.uint64,
)


def row_digests(parsed: ParsedLightcurve) -> np.ndarray:
    """One uint64 per row, from the bit patterns of every value in it (vectorised)."""
    columns = [c for pair in parsed.bands.values() for c in pair] + [
        f.astype(np.float64) for f in parsed.flags.values()
    ]
    bits = (
        np.column_stack(columns).astype(np.float64).view(np.uint64)
        if columns
        else np.zeros((len(parsed), 1), np.uint64)
    )
    with np.errstate(over="ignore"):
        mixed = bits * _PRIMES[: bits.shape[1]]
        return np.bitwise_xor.reduce(mixed ^ (mixed >> np.uint64(29)), axis=1)


def encode_digests(mjd: np.ndarray, digests: np.ndarray) -> str:
    raw = np.asarray(mjd, np.float64).tobytes() + np.asarray(digests, np.uint64).tobytes()
    return base64.b64encode(zlib.compress(raw, 1)).decode()


def decode_digests(text: str) -> tuple[np.ndarray, np.ndarray]:
    raw = zlib.decompress(base64.b64decode(text))
    n = len(raw) // 16
    return np.frombuffer(raw[: 8 * n], np.float64), np.frombuffer(raw[8 * n :], np.uint64)


def changed_rows(state: schemas.FetchState | None, mjd: np.ndarray, digests: np.ndarray) -> np.ndarray:
    """Mask of rows that are new or whose values differ from what was published."""
    if state is None or not state.digests:
        return np.ones(len(mjd), dtype=bool)
    old_mjd, old_digest = decode_digests(state.digests)
    order = np.argsort(old_mjd)
    old_mjd, old_digest = old_mjd[order], old_digest[order]
    pos = np.clip(np.searchsorted(old_mjd, mjd), 0, max(len(old_mjd) - 1, 0))
    known = (old_mjd[pos] == mjd) if len(old_mjd) else np.zeros(len(mjd), dtype=bool)
    return ~known | (old_digest[pos] != digests)


async def load_all(settings: Settings) -> dict[str, schemas.FetchState]:
    """The latest state of every series, read from the start of the compacted topic."""
    consumer = kafka.consumer(settings, auto_offset_reset="earliest", enable_auto_commit=False, group_id=None)
    await consumer.start()
    states: dict[str, schemas.FetchState] = {}
    try:
        partitions = [TopicPartition(topics.FETCHSTATE.name, p) for p in range(topics.FETCHSTATE.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(timeout_ms=1000)
            for messages in batch.values():
                for m in messages:
                    key = m.key.decode()
                    if m.value is None:
                        states.pop(key, None)
                    else:
                        states[key] = schemas.FetchState.model_validate(json.loads(m.value))
    finally:
        await consumer.stop()
    return states
