"""Turning parsed lightcurves into flashes.lightcurve.v1 messages and dead letters."""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from aiokafka import AIOKafkaProducer

import schemas
from flashes import topics
from flashes.kafka import dead_letter, encode, send_dead_letter
from flashes.timeconv import EPOCH, mjd_to_unix_us
from services.fetcher.parsers import ParsedLightcurve


def points(parsed: ParsedLightcurve, source_id: str, instrument: str, url: str,
           fetched_at: datetime) -> list[schemas.LightcurvePoint]:
    provenance = schemas.Provenance(url=url, fetched_at=fetched_at)
    micros = mjd_to_unix_us(parsed.mjd).tolist()
    mjds = parsed.mjd.tolist()
    bands = {band: (flux.tolist(), err.tolist()) for band, (flux, err) in parsed.bands.items()}
    flags = {name: values.tolist() for name, values in parsed.flags.items()}
    return [
        schemas.LightcurvePoint(
            source_id=source_id, instrument=instrument, time=EPOCH + timedelta(microseconds=us), mjd=mjd,
            bands={b: schemas.Measurement(flux=f[i], error=e[i]) for b, (f, e) in bands.items()},
            flags={name: v[i] for name, v in flags.items()}, provenance=provenance)
        for i, (us, mjd) in enumerate(zip(micros, mjds))
    ]


async def publish(producer: AIOKafkaProducer, parsed: ParsedLightcurve, source_id: str, instrument: str,
                  url: str, fetched_at: datetime) -> int:
    """Send every good point (in time order, one key per series) and every rejected line."""
    key = topics.series_key(instrument, source_id).encode()
    sends = [await producer.send(topics.LIGHTCURVE.name, encode(p), key=key)
             for p in points(parsed, source_id, instrument, url, fetched_at)]
    origin = f"fetcher:{topics.series_key(instrument, source_id)}"
    for line, reason in parsed.rejected:
        await send_dead_letter(producer, dead_letter(origin, reason, line, url))
    await asyncio.gather(*sends)
    return len(sends)
