"""Turning parsed lightcurves into flashes.lightcurve.v2 chunks and publishing them.

A series' new points become bounded chunks of columns (flashes/chunks.py) keyed by the source
id, so Kafka's partitioner puts every series of a source on one partition.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

import numpy as np
from aiokafka import AIOKafkaProducer

import schemas
from flashes import chunks, metrics, topics
from flashes.kafka import dead_letter, send_dead_letter
from flashes.parsers import ParsedLightcurve
from flashes.units import UNITS


def make_chunks(
    parsed: ParsedLightcurve, rows: np.ndarray, source_id: str, instrument: str, url: str, fetched_at: datetime
) -> list[schemas.LightcurveChunk]:
    """The selected rows (in time order) as bounded chunks."""
    idx = np.flatnonzero(rows)
    columns = {
        "flux": {b: f[idx] for b, (f, _) in parsed.bands.items()},
        "error": {b: e[idx] for b, (_, e) in parsed.bands.items()},
        "flags": {name: v[idx] for name, v in parsed.flags.items()},
    }
    return chunks.build(
        schemas.LightcurveChunk,
        parsed.mjd[idx],
        columns,
        source_id=source_id,
        instrument=instrument,
        bands=list(parsed.bands),
        units=UNITS[instrument],
        provenance=schemas.Provenance(url=url, fetched_at=fetched_at),
    )


async def publish(
    producer: AIOKafkaProducer,
    parsed: ParsedLightcurve,
    rows: np.ndarray,
    source_id: str,
    instrument: str,
    url: str,
    fetched_at: datetime,
) -> int:
    """Send the selected points (in time order) and every rejected line; returns the points sent."""
    parts = make_chunks(parsed, rows, source_id, instrument, url, fetched_at)
    pending = [
        await producer.send(topics.LIGHTCURVE.name, topics.LIGHTCURVE.encode(c), key=source_id.encode()) for c in parts
    ]
    origin = f"fetcher:{topics.series_key(instrument, source_id)}"
    for line, reason, label in parsed.rejected:
        metrics.DEAD_LETTERS.labels(service="fetcher", reason=label).inc()
        await send_dead_letter(producer, dead_letter(origin, reason, line, url))
    await asyncio.gather(*pending)
    points = sum(c.count for c in parts)
    metrics.POINTS_OUT.labels("fetcher", topics.LIGHTCURVE.name).inc(points)
    return points
