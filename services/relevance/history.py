"""A series' stored history, read back from QuestDB in time order: what a relevance model is rebuilt from.

The rows are turned into exactly the columns the live path feeds the model
(services/relevance/series.py): a lightcurve's main band (MAXI 2-20 keV) with, for MAXI, the three
bands in mCrab and the 4-10/2-4 keV colour computed by the same functions from them; a derived series' value
(the colour too for hardness). QuestDB keeps DOUBLEs and the µs timestamps exactly and /exec
prints doubles so that they read back bit for bit, so the rebuilt model equals the live one
(tests/test_rescore.py compares their states).

The read is paged on the designated timestamp (`PAGE_ROWS` rows a query, the scan starting where the
previous page ended), so a whole-history series costs a few queries and bounded memory.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from flashes import questdb
from flashes.errors import QuestDBError, StateRestoreError
from flashes.settings import Settings
from flashes.timeconv import mjd_to_unix_us
from flashes.topics import DERIVED_KINDS, catalogue_series
from flashes.units import MAIN_BAND
from services.relevance.model import BAND_ORDER
from services.relevance.series import SeriesColumns, of_derived, of_instrument

PAGE_ROWS = 30_000  # 7,500 MAXI points (four bands each); a whole MAXI history (~6,000 days) is one page


def _text(value: str) -> str:
    """A SQL string literal (the names are the project's own series names; quotes doubled all the same)."""
    return "'" + value.replace("'", "''") + "'"


class History:
    """Reads the stored points of a series from QuestDB (HTTP /exec, as flashes.questdb does)."""

    def __init__(self, settings: Settings, timeout_s: float = 2.0, page_rows: int = PAGE_ROWS) -> None:
        # A short timeout (per request phase; a whole MAXI history is read in under 0.1 s, bench/relevance_rebuild.py):
        # a QuestDB that does not answer becomes a retry soon, within the worker's bound on waiting for it.
        if page_rows <= len(BAND_ORDER) + 1:  # a page must hold more than one point's rows, or it never ends
            raise ValueError(f"page_rows {page_rows} holds no more than one point")
        self.settings, self.timeout_s, self.page_rows = settings, timeout_s, page_rows
        self.tables_ready = False

    def _query(self, sql: str) -> list[dict]:
        try:
            if not self.tables_ready:  # a first start may precede the sink's: an empty table, not an error
                for table in ("lightcurve", "derived"):
                    questdb.query(self.settings, questdb.TABLES[table], timeout_s=self.timeout_s)
                self.tables_ready = True
            return questdb.query(self.settings, sql, timeout_s=self.timeout_s)
        except (QuestDBError, ValueError) as exc:  # ValueError: an answer that is not QuestDB's JSON
            raise StateRestoreError(f"the stored history cannot be read: {exc}") from exc

    def pages(
        self, kind: str, source_id: str, before_us: int | None = None, until_mjd: float | None = None
    ) -> Iterator[SeriesColumns]:
        """The stored points of the series in time order, a page at a time: those before `before_us` (µs,
        exclusive) and those at or before `until_mjd`. StateRestoreError if QuestDB cannot answer."""
        ends = [] if before_us is None else [before_us]
        if until_mjd is not None:  # a second more than the time of until_mjd; the exact cut is on mjd below
            ends.append(int(mjd_to_unix_us(np.array([until_mjd]))[0]) + 1_000_000)
        if not ends:
            return
        series = catalogue_series(kind, source_id)
        if kind in DERIVED_KINDS:
            select, bands = "SELECT cast(ts AS LONG) t, mjd, value flux, error FROM derived", ""
        else:
            wanted = (MAIN_BAND[kind], *BAND_ORDER) if kind == "maxi" else (MAIN_BAND[kind],)
            select = "SELECT cast(ts AS LONG) t, mjd, band, flux, error FROM lightcurve"
            bands = f" AND band IN ({', '.join(_text(b) for b in wanted)})"
        cursor = None
        while True:
            start = "" if cursor is None else f" AND ts >= {cursor}"
            rows = self._query(
                f"{select} WHERE series = {_text(series)} AND ts < {max(ends)}{start}{bands} "
                f"ORDER BY ts LIMIT {self.page_rows}"
            )
            full = len(rows) == self.page_rows
            if full:  # the last time may have bands on the next page: that page starts with it
                cursor = rows[-1]["t"]
                rows = [r for r in rows if r["t"] != cursor]
            page = _columns(rows, source_id, kind)
            keep = np.zeros(len(page.time), dtype=bool)
            if before_us is not None:
                keep |= page.time < before_us
            if until_mjd is not None:
                keep |= page.mjd <= until_mjd
            if keep.any():
                yield SeriesColumns(
                    series,
                    source_id,
                    kind,
                    page.time[keep],
                    page.mjd[keep],
                    page.value[keep],
                    page.error[keep],
                    page.colour[keep],
                    page.colour_error[keep],
                    None if page.bands is None else (page.bands[0][keep], page.bands[1][keep]),
                )
            if not full:
                return


def _columns(rows: list[dict], source_id: str, kind: str) -> SeriesColumns:
    """One page of rows (one per point, or per point and band) as the model's columns, read as the live path reads
    a chunk (`of_derived`, `of_instrument`): a time without the main band is no point, as live."""
    t = np.array([r["t"] for r in rows], dtype=np.int64)
    mjd, flux, error = (np.array([r[name] for r in rows], dtype=np.float64) for name in ("mjd", "flux", "error"))
    if kind in DERIVED_KINDS:  # one row per point
        return of_derived(kind, source_id, t, mjd, flux, error)
    band = np.array([r["band"] for r in rows], dtype=object)
    times, index = np.unique(t, return_inverse=True)
    fluxes: dict[str, np.ndarray] = {}
    errors: dict[str, np.ndarray] = {}
    for b in dict.fromkeys([MAIN_BAND[kind], *band.tolist()]):
        rows_b = band == b
        fluxes[b], errors[b] = np.full(len(times), np.nan), np.full(len(times), np.nan)
        fluxes[b][index[rows_b]], errors[b][index[rows_b]] = flux[rows_b], error[rows_b]
    at = np.full(len(times), np.nan)
    at[index] = mjd  # every band of a time has its mjd
    has = ~np.isnan(fluxes[MAIN_BAND[kind]])
    columns = of_instrument(
        kind,
        source_id,
        times[has],
        at[has],
        {b: f[has] for b, f in fluxes.items()},
        {b: e[has] for b, e in errors.items()},
    )
    assert columns is not None  # the main band is among the columns
    return columns
