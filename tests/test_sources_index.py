"""The API's source search over the bundled catalogue (services/api/sources.py), without a server."""

from __future__ import annotations

from pathlib import Path

from flashes import catalogue
from flashes.settings import Settings
from services.api.sources import SourceIndex


def test_instrument_any_finds_exactly_the_sources_with_a_lightcurve(tmp_path: Path) -> None:
    records = catalogue.load(Settings(var_dir=tmp_path))
    index = SourceIndex(records)
    found = [sid for sid, _ in index.search(None, None, "any", None, {}, "name", False)]
    assert set(found) == {r.id for r in records if r.instruments} and len(found) < len(records)
    maxi = {sid for sid, _ in index.search(None, None, "maxi", None, {}, "name", False)}
    assert maxi == {r.id for r in records if r.maxi} and maxi < set(found)
    assert len(index.search(None, None, None, None, {}, "name", False)) == len(records)
