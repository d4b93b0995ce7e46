"""Bounded requests (issue #21): what the 7.5 MB subscription of 500,000 sources costs the API now, and what
the largest request it accepts costs.

The issue measured 9.95 s of the event loop for `{"sources": [...500k]}`. Here the API app (create_app, in
process, no Kafka needed: nothing is stored) is sent that body with its Content-Length and as a chunked
stream; both are refused 413 before the body is parsed. The largest accepted filter (1,000 sources, every
tag, a cone) is then validated (the request model) and matched against the whole catalogue (sources_of)
`--repeat` times.

    .venv/bin/python bench/request_bounds.py [--repeat 200]

The last line printed is one JSON object with the figures (milliseconds).
"""

from __future__ import annotations

import argparse
import json
import time

from fastapi.testclient import TestClient

from flashes import catalogue
from flashes.settings import Settings
from flashes.subscriptions import sources_of
from flashes.tags import TAGS
from services.api.app import create_app
from services.api.models import SubscriptionRequest


def timed(call, repeat: int = 1) -> tuple[float, object]:  # noqa: ANN001 - any callable
    start = time.perf_counter()
    for _ in range(repeat):
        out = call()
    return (time.perf_counter() - start) * 1000 / repeat, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    settings = Settings()  # the defaults: nothing here reaches a server
    records = {r.id: r for r in catalogue.load(settings)}
    client = TestClient(create_app(settings))  # no lifespan: the refusals never reach the store
    huge = json.dumps({"channel": "none", "filters": {"sources": ["maxij1535-571"] * 500_000}}).encode()
    headers = {"content-type": "application/json"}
    declared_ms, declared = timed(lambda: client.post("/subscriptions", content=huge, headers=headers))
    streamed_ms, streamed = timed(
        lambda: client.post(
            "/subscriptions", content=iter([huge[i : i + 65536] for i in range(0, len(huge), 65536)]), headers=headers
        )
    )
    largest = json.dumps(
        {
            "channel": "none",
            "filters": {
                "sources": sorted(records)[:1000],
                "tags": list(TAGS),
                "cone": {"ra": 250, "dec": -40, "radius": 30},
            },
        }
    )
    validate_ms, body = timed(lambda: SubscriptionRequest.model_validate_json(largest), args.repeat)
    match_ms, selected = timed(lambda: sources_of(body.filters, records), args.repeat)
    print(
        f"500k sources ({len(huge) / 1e6:.1f} MB): {declared.status_code} in {declared_ms:.1f} ms with "
        f"Content-Length, {streamed.status_code} in {streamed_ms:.1f} ms streamed; the largest accepted filter "
        f"({len(largest)} bytes): validated in {validate_ms:.2f} ms, matched over {len(records)} catalogue "
        f"sources in {match_ms:.2f} ms ({len(selected)} selected)"
    )
    print(
        json.dumps(
            {
                "body_bytes": len(huge),
                "refused_declared": declared.status_code,
                "refused_declared_ms": round(declared_ms, 2),
                "refused_streamed": streamed.status_code,
                "refused_streamed_ms": round(streamed_ms, 2),
                "largest_accepted_bytes": len(largest),
                "largest_validate_ms": round(validate_ms, 3),
                "largest_match_ms": round(match_ms, 3),
                "catalogue_sources": len(records),
                "selected": len(selected),
            }
        )
    )


if __name__ == "__main__":
    main()
