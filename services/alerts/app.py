"""The alerts stream processor.

An alert is raised when a series' relevance reaches the threshold after being below it, or
when another alerting term crosses it while the relevance stays high (services/alerts/trigger.py):
one alert per episode and reason, not one per day of an outburst. It goes to flashes.alerts.v1
and to every configured webhook; a webhook that keeps failing sends the alert to the
dead-letter topic.
"""
from __future__ import annotations

import faust
import httpx

import schemas
from flashes import topics
from flashes.kafka import dead_letter
from flashes.settings import Settings
from flashes.streaming import make_app, topic
from services.alerts import trigger
from services.alerts.webhooks import deliver


WHY = {"model": "brighter than this source's usual level", "hardness": "its colour (hard/soft) switched",
       "relevance": "several terms together"}


def explain(score: schemas.RelevanceScore, reasons: list[str], threshold: float) -> str:
    t = score.terms
    return (f"{score.series} at MJD {score.mjd:.2f}: {'; '.join(WHY[r] for r in reasons)}. "
            f"Relevance {score.relevance:.2f} (threshold {threshold:.2f}) from model term {t.model:.2f} and "
            f"hardness term {t.hardness:.2f}; flux S/N term {t.flux:.2f}, trend term {t.trend:.2f} "
            f"(value {score.value:.4g} ± {score.error:.2g}, model {score.model_version})")


def make_alert(score: schemas.RelevanceScore, reasons: list[str], settings: Settings) -> schemas.Alert:
    api = settings.api_url
    return schemas.Alert(
        alert_id=f"{score.series}@{score.mjd:.5f}", source_id=score.source_id, series=score.series,
        time=score.time, mjd=score.mjd, relevance=score.relevance, reasons=reasons,
        explanation=explain(score, reasons, settings.relevance_threshold), terms=score.terms,
        model_version=score.model_version,
        links={"source": f"{api}/sources/{score.source_id}",
               "timeseries": f"{api}/timeseries?source={score.source_id}&series={score.kind}"})


def build(settings: Settings) -> faust.App:
    app = make_app("alerts", settings)
    relevance = topic(app, topics.RELEVANCE)
    alerts = topic(app, topics.ALERTS)
    deadletter = topic(app, topics.DEADLETTER)
    last_scores = app.Table("alerts-last-score", default=None, partitions=topics.RELEVANCE.partitions)
    threshold = settings.relevance_threshold
    client = httpx.AsyncClient(timeout=10.0)

    @app.agent(relevance)
    async def raise_alerts(stream: faust.StreamT) -> None:
        async for value in stream:
            score = schemas.RelevanceScore.model_validate(value)
            current = trigger.snapshot(score.relevance, score.terms.model_dump())
            reasons = trigger.reasons(last_scores.get(score.series), current, threshold)
            last_scores[score.series] = current
            if not reasons:
                continue
            alert = make_alert(score, reasons, settings)
            body = alert.model_dump_json().encode()
            await alerts.send(key=alert.source_id.encode(), value=alert.model_dump(mode="json"))
            for url in settings.webhooks:
                failure = await deliver(client, url, body, settings.webhook_secret, alert.alert_id)
                if failure:
                    letter = dead_letter("alerts:webhook", failure, body.decode(), url)
                    await deadletter.send(key=b"alerts:webhook", value=letter.model_dump(mode="json"))

    return app
