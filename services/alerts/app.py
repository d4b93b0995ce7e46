"""The alerts stream processor, and webhook delivery apart from it.

An alert is raised when a series' relevance reaches the threshold after being below it, or
when another alerting term crosses it while the relevance stays high (flashes/trigger.py):
one alert per episode and reason, not one per day of an outburst. Its id is the series and the
point's time, so a batch replayed after a crash raises the same alerts with the same ids (the
sink keeps one row per id). The trigger state of every series (the last score's snapshot) is in
the compacted state topic with the input offset it covers (flashes/processor.py).

Webhooks are delivered by a separate consumer of flashes.alerts.v1 (its own group, offsets
committed after delivery), so a slow receiver never holds up detection.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

import httpx
from aiokafka import AIOKafkaConsumer

import schemas
from flashes import topics
from flashes.errors import DecodeError
from flashes.kafka import dead_letter, make_producer, rejected, send_dead_letter
from flashes.processor import Output, Processor
from flashes.settings import Settings
from flashes.timeconv import mjd_to_datetime
from flashes import trigger
from services.alerts.webhooks import deliver

log = logging.getLogger(__name__)
WHY = {"model": "brighter than this source's usual level", "hardness": "its colour (hard/soft) switched",
       "relevance": "several terms together"}
TERMS = tuple(schemas.RelevanceTerms.model_fields)


def explain(series: str, mjd: float, value: float, error: float, relevance: float, terms: schemas.RelevanceTerms,
            model_version: str, reasons: list[str], threshold: float) -> str:
    return (f"{series} at MJD {mjd:.2f}: {'; '.join(WHY[r] for r in reasons)}. "
            f"Relevance {relevance:.2f} (threshold {threshold:.2f}) from model term {terms.model:.2f} and "
            f"hardness term {terms.hardness:.2f}; flux S/N term {terms.flux:.2f}, trend term {terms.trend:.2f} "
            f"(value {value:.4g} ± {error:.2g}, model {model_version})")


def make_alert(chunk: schemas.RelevanceChunk, i: int, reasons: list[str], settings: Settings) -> schemas.Alert:
    """The alert for point i of a relevance chunk."""
    api, mjd = settings.api_url, chunk.mjd[i]
    terms = schemas.RelevanceTerms(**{name: getattr(chunk.terms, name)[i] for name in TERMS})
    return schemas.Alert(
        alert_id=f"{chunk.series}@{mjd:.5f}", source_id=chunk.source_id, series=chunk.series,
        time=mjd_to_datetime(mjd), mjd=mjd, relevance=chunk.relevance[i], reasons=reasons,
        explanation=explain(chunk.series, mjd, chunk.value[i], chunk.error[i], chunk.relevance[i], terms,
                            chunk.model_version, reasons, settings.relevance_threshold),
        terms=terms, model_version=chunk.model_version,
        links={"source": f"{api}/sources/{chunk.source_id}",
               "timeseries": f"{api}/timeseries?source={chunk.source_id}&series={chunk.kind}"})


class Alerts:
    """The alerts `Logic` (see flashes/processor.py): state per series = the last score's snapshot."""

    inputs = (topics.RELEVANCE,)
    state = topics.ALERTS_STATE

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.last: dict[str, tuple[float, dict[str, float]]] = {}

    def key(self, chunk: schemas.RelevanceChunk) -> str:
        return chunk.series

    def restore(self, state: schemas.AlertState) -> None:
        self.last[state.key] = state.last_mjd, state.last

    def forget(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.last.pop(key, None)

    def snapshot(self, key: str, topic: str, partition: int, offset: int) -> schemas.AlertState:
        last_mjd, last = self.last[key]
        return schemas.AlertState(key=key, topic=topic, partition=partition, offset=offset, last_mjd=last_mjd,
                                  last=last)

    def apply(self, chunk: schemas.RelevanceChunk) -> list[Output]:
        last_mjd, previous = self.last.get(chunk.series, (float("-inf"), None))
        out = []
        columns = [getattr(chunk.terms, name) for name in TERMS]
        for i, mjd in enumerate(chunk.mjd):
            if mjd <= last_mjd:  # a replayed score
                continue
            current = trigger.snapshot(chunk.relevance[i], {name: c[i] for name, c in zip(TERMS, columns)})
            reasons = trigger.reasons(previous, current, self.settings.relevance_threshold)
            if reasons:
                alert = make_alert(chunk, i, reasons, self.settings)
                out.append(Output(topics.ALERTS, alert.source_id, alert))
            last_mjd, previous = mjd, current
        if previous is not None:
            self.last[chunk.series] = last_mjd, previous
        return out


async def deliver_webhooks(settings: Settings) -> None:
    """POST every alert of flashes.alerts.v1 to every configured webhook; commit after delivery.

    A webhook that keeps failing sends the alert to the dead-letter topic and delivery goes on.
    """
    if not settings.webhooks:
        return
    consumer = AIOKafkaConsumer(topics.ALERTS.name, bootstrap_servers=settings.kafka_bootstrap,
                                group_id="flashes-webhooks", enable_auto_commit=False, auto_offset_reset="earliest")
    producer = make_producer(settings)
    await consumer.start()
    await producer.start()
    try:
        async with httpx.AsyncClient(timeout=10.0) as client:
            while True:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for r in records:
                        try:
                            alert = topics.ALERTS.decode(r.value)
                        except DecodeError as exc:
                            await send_dead_letter(producer, rejected("alerts:webhook", str(exc), r))
                            continue
                        failures = await asyncio.gather(*(deliver(client, url, r.value, settings.webhook_secret,
                                                                  alert.alert_id) for url in settings.webhooks))
                        for url, failure in zip(settings.webhooks, failures):
                            if failure:
                                await send_dead_letter(producer, dead_letter("alerts:webhook", failure,
                                                                             r.value.decode(), url))
                await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()


def build(settings: Settings) -> Processor:
    return Processor("alerts", Alerts(settings), settings, max_records=64, alongside=deliver_webhooks)
