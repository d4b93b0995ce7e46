"""The derive stream processor.

The lightcurve topic is partitioned by source (topics.source_partition), so MAXI and BAT of a
source arrive on one partition in spite of their different keys. Each UTC day's MAXI 2-20 keV
and BAT 15-50 keV values are kept in a changelog-backed table, and whenever a day has both, its
hardness ratio and combined flux are (re)emitted.
"""
from __future__ import annotations

import math

import faust
from pydantic import ValidationError

import schemas
from flashes import topics
from flashes.kafka import dead_letter
from flashes.settings import Settings
from flashes.streaming import make_app, topic
from flashes.timeconv import mjd_to_datetime
from flashes.units import MAIN_BAND, to_mcrab
from services.derive.physics import combined, hardness

JOINED = ("swift", "maxi")


def derived_points(source_id: str, day: int, day_values: dict[str, list[float]]) -> list[schemas.DerivedPoint]:
    bat, maxi = tuple(day_values["swift"]), tuple(day_values["maxi"])
    mjd = day + 0.5
    inputs = {"swift": schemas.Measurement(flux=bat[0], error=bat[1]),
              "maxi": schemas.Measurement(flux=maxi[0], error=maxi[1])}
    out = []
    for kind, result in (("hardness", hardness(bat, maxi)), ("combined", combined(bat, maxi))):
        if result is not None:
            out.append(schemas.DerivedPoint(source_id=source_id, kind=kind, time=mjd_to_datetime(mjd), mjd=mjd,
                                            value=result[0], error=result[1], inputs=inputs))
    return out


def build(settings: Settings) -> faust.App:
    app = make_app("derive", settings)
    lightcurve = topic(app, topics.LIGHTCURVE)
    derived = topic(app, topics.DERIVED)
    deadletter = topic(app, topics.DEADLETTER)
    days = app.Table("derive-days", default=None, partitions=topics.LIGHTCURVE.partitions)

    @app.agent(lightcurve)
    async def derive(stream: faust.StreamT) -> None:
        async for value in stream:
            try:
                point = schemas.LightcurvePoint.model_validate(value)
            except ValidationError as exc:
                letter = dead_letter("derive", f"invalid lightcurve point: {exc.errors()[0]['msg']}", str(value))
                await deadletter.send(key=b"derive", value=letter.model_dump(mode="json"))
                continue
            if point.instrument not in JOINED:
                continue
            measurement = point.bands.get(MAIN_BAND[point.instrument])
            if measurement is None or not math.isfinite(measurement.flux):
                continue
            day = math.floor(point.mjd)
            key = f"{point.source_id}:{day}"
            day_values = dict(days.get(key) or {})
            day_values[point.instrument] = list(to_mcrab(point.instrument, MAIN_BAND[point.instrument],
                                                         measurement.flux, measurement.error))
            days[key] = day_values
            if all(inst in day_values for inst in JOINED):
                for d in derived_points(point.source_id, day, day_values):
                    await derived.send(key=topics.series_key(d.kind, d.source_id).encode(),
                                       value=d.model_dump(mode="json"))

    return app
