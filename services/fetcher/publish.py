"""Turning parsed lightcurves into flashes.lightcurve.v1 messages, fast.

The JSON of every point is built from column arrays (times formatted by numpy, floats with
repr) instead of one pydantic model per point; tests check that each message validates
against schemas.LightcurvePoint. Messages of a series go to Kafka in large batches on the
source's partition (topics.source_partition), so the producer does not pay per message.
"""
from __future__ import annotations

import asyncio
import json
from datetime import datetime

import numpy as np
from aiokafka import AIOKafkaProducer

from flashes import topics
from flashes.kafka import dead_letter, send_dead_letter
from flashes.timeconv import mjd_to_unix_us
from services.fetcher.parsers import ParsedLightcurve

def encode_points(parsed: ParsedLightcurve, rows: np.ndarray, source_id: str, instrument: str, url: str,
                  fetched_at: datetime) -> list[bytes]:
    """JSON values (schemas.LightcurvePoint) of the selected rows, in time order."""
    idx = np.flatnonzero(rows)
    times = np.datetime_as_string(mjd_to_unix_us(parsed.mjd[idx]).astype("datetime64[us]"), unit="us")
    head = '{"version":1,"source_id":%s,"instrument":"%s","time":"' % (json.dumps(source_id), instrument)
    provenance = ',"provenance":{"url":%s,"fetched_at":"%s"}}' % (json.dumps(url), fetched_at.isoformat())
    columns = [times.tolist(), parsed.mjd[idx].tolist()]
    band_parts = []
    for band, (flux, error) in parsed.bands.items():
        band_parts.append(f'"{band}":{{"flux":%r,"error":%r}}')
        columns += [flux[idx].tolist(), error[idx].tolist()]
    flag_parts = [f'"{name}":%d' for name in parsed.flags]
    columns += [values[idx].tolist() for values in parsed.flags.values()]
    template = (head.replace("%", "%%") + '%sZ","mjd":%r,"bands":{' + ",".join(band_parts) + '},"flags":{'
                + ",".join(flag_parts) + "}" + provenance.replace("%", "%%"))
    return [(template % row).encode() for row in zip(*columns)]


async def publish(producer: AIOKafkaProducer, parsed: ParsedLightcurve, rows: np.ndarray, source_id: str,
                  instrument: str, url: str, fetched_at: datetime) -> int:
    """Send the selected points (in time order) and every rejected line; returns the points sent."""
    key = topics.series_key(instrument, source_id).encode()
    partition = topics.source_partition(source_id, len(await producer.partitions_for(topics.LIGHTCURVE.name)))
    values = encode_points(parsed, rows, source_id, instrument, url, fetched_at)
    pending = []
    batch = producer.create_batch()
    for value in values:
        if batch.append(key=key, value=value, timestamp=None) is None:
            pending.append(await producer.send_batch(batch, topics.LIGHTCURVE.name, partition=partition))
            batch = producer.create_batch()
            batch.append(key=key, value=value, timestamp=None)
    if batch.record_count():
        pending.append(await producer.send_batch(batch, topics.LIGHTCURVE.name, partition=partition))
    origin = f"fetcher:{topics.series_key(instrument, source_id)}"
    for line, reason in parsed.rejected:
        await send_dead_letter(producer, dead_letter(origin, reason, line, url))
    await asyncio.gather(*pending)
    return len(values)
