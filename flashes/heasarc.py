"""HEASARC's own table of class names, asked for through astroquery when the catalogue is refreshed online.

HEASARC keeps its object classes as a table of the archive: `class` (heasarc_class in its database, one row per
four-digit code: class_id, class_name). The `class` column of its other tables relates to it, which is how its
Browse answers show "HMXRB SUPERGIANT X-RAY PULSAR ECLIPSING" for 1213. `flashes catalogue build --online` names
the catalogue's classes from it; data/heasarc_classes.csv, decoded by flashes/catalogue.py, stays the offline
default and names the codes this table lacks.
"""

from __future__ import annotations

from typing import Any

import requests
from astroquery.heasarc import HeasarcClass
from pyvo.dal import DALFormatError, DALQueryError, DALServiceError

from flashes.errors import HeasarcError

QUERY = "SELECT class_id, class_name FROM class"
COLUMNS = ("class_id", "class_name")


class _TimeoutSession(requests.Session):
    """pyvo sends its requests without a timeout; an archive that accepts and never answers would hold the
    command forever."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__()
        self.timeout_s = timeout_s

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout_s)
        return super().request(*args, **kwargs)


def _failure(exc: Exception, timeout_s: float) -> str:
    """What went wrong, in words: pyvo wraps the requests error it met (as `cause`) in its own."""
    cause = getattr(exc, "cause", None) or exc
    if isinstance(cause, requests.Timeout):
        return f"gave no answer within {timeout_s:g} s"
    if isinstance(cause, requests.ConnectionError):
        return "could not be reached"
    if isinstance(exc, DALServiceError) and exc.code:
        return f"answered HTTP {exc.code}"
    return "answered with something other than a VOTable"


def class_names(vo_url: str, timeout_s: float) -> dict[int, str]:
    """Every class code HEASARC names, with its name, from the TAP service at `vo_url`/tap (astroquery's
    conf.VO_URL layout). Raises HeasarcError, saying why, if it cannot be reached or answers otherwise."""
    heasarc = HeasarcClass()
    heasarc.VO_URL = vo_url.rstrip("/")
    heasarc._set_session(_TimeoutSession(timeout_s))  # the client's only way to give its requests a session
    try:
        table = heasarc.query_tap(QUERY).to_table()
    except DALQueryError as exc:
        raise HeasarcError(f"HEASARC's TAP service at {vo_url} refused the query: {str(exc)[:200]}") from exc
    except (DALServiceError, DALFormatError, requests.RequestException) as exc:
        raise HeasarcError(f"HEASARC's TAP service at {vo_url} {_failure(exc, timeout_s)}") from exc
    missing = [column for column in COLUMNS if column not in table.colnames]
    if missing:
        raise HeasarcError(f"HEASARC's class table came without the column {', '.join(missing)}")
    names: dict[int, str] = {}
    for row, (code, name) in enumerate(zip(table["class_id"].tolist(), table["class_name"].tolist()), 1):
        if not isinstance(code, int) or not 0 <= code <= 9999:
            raise HeasarcError(f"HEASARC's class table, row {row}: class_id is not a four-digit class code")
        if not isinstance(name, str) or not name.strip():
            raise HeasarcError(f"HEASARC's class table, row {row}: class {code} has no name")
        if code in names:
            raise HeasarcError(f"HEASARC's class table, row {row}: class {code} is named twice")
        names[code] = name.strip()
    if not names:
        raise HeasarcError("HEASARC's class table came empty")
    return names
