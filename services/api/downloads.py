"""Rows of a series as a file: CSV (with a commented header), JSON or VOTable (astropy)."""

from __future__ import annotations

import io
import warnings
from typing import Any, Literal

import orjson
import pandas as pd
from astropy.table import Table
from fastapi.responses import Response

from flashes.units import MCRAB_PER_UNIT

Format = Literal["csv", "json", "votable"]
MEDIA = {"csv": "text/csv; charset=utf-8", "json": "application/json", "votable": "application/x-votable+xml"}


def header(title: str, start: str, end: str) -> list[str]:
    factors = "; ".join(f"{inst} {band} keV x{f:.10g}" for (inst, band), f in MCRAB_PER_UNIT.items())
    return [
        f"FLASHES stream: {title}",
        f"time range (UTC): {start} .. {end}",
        "time: UTC; mjd: Modified Julian Date (UTC)",
        f"mCrab = factor x provider flux: {factors}",
        "hardness = BAT 15-50 / MAXI 2-20 (both in mCrab); combined = BAT + MAXI in mCrab, "
        "errors propagated in quadrature",
    ]


def file(rows: list[dict[str, Any]], fmt: Format, name: str, lines: list[str]) -> Response:
    """The rows as a download named `name`.{fmt}; `lines` describe it (CSV comments, VOTable description)."""
    disposition = {"Content-Disposition": f'attachment; filename="{name}.{"xml" if fmt == "votable" else fmt}"'}
    if fmt == "json":
        return Response(orjson.dumps(rows), media_type=MEDIA[fmt], headers=disposition)
    frame = pd.DataFrame(rows, columns=list(dict.fromkeys(k for r in rows for k in r)) or ["time", "mjd"])
    if fmt == "csv":
        text = "".join(f"# {line}\n" for line in lines) + frame.to_csv(index=False, float_format="%.10g")
        return Response(text, media_type=MEDIA[fmt], headers=disposition)
    table = Table.from_pandas(frame)
    table.meta["description"] = " | ".join(lines)
    out = io.BytesIO()
    with warnings.catch_warnings():  # astropy notes that it derives each FIELD's ID from its name: intended
        warnings.simplefilter("ignore")
        table.write(out, format="votable")
    return Response(out.getvalue(), media_type=MEDIA[fmt], headers=disposition)
