"""How the pages are written: the Jinja2 templates (services/api/templates) with their filters, the words for
tags, numbers and positions, and `Site`, what every page request shares (the templates, the home page's sky map).
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import astropy.units as u
from astropy.coordinates import Angle
from fastapi.responses import HTMLResponse
from jinja2 import Environment
from markupsafe import Markup

import schemas
from flashes import templating
from flashes.settings import Settings
from flashes.units import INSTRUMENTS, MAIN_BAND, SERIES_TITLES, UNITS
from services.api.skymap import sky_map
from services.api.sources import SourceIndex
from services.api.store import EPISODE_LABELS, OPEN_LABEL

# The seed README's tag table, in its words.
TAG_TEXT = {
    "LMXRB": "Low-Mass X-Ray Binary: a black hole or neutron star accretes matter from a low-mass companion; "
    "the hot matter shines in X-rays.",
    "SEYFERT GALAXY": "A subclass of AGN with a luminous nucleus; emits X-rays through hot gas in the accretion disk.",
    "GLOBULAR CLUSTER": "A spherical group of typically very old stars, frequently hosting X-ray sources "
    "(Pooley 2010).",
    "GAMMA RAY SOURCE": "An object with conditions extreme enough to emit gamma rays.",
    "BE STAR": "A B-type star with a circumstellar disk; a common donor in Be/X-ray binaries.",
    "BL LAC": "A subclass of AGN whose jet points along the line of sight; emits X-rays from hot matter in the jet.",
    "BLACK HOLE": "Extreme gravity, often surrounded by disks of hot gas that emit X-rays.",
    "GALAXY CLUSTER": "Galaxies bound together by gravity; X-rays from bremsstrahlung, recombination and "
    "de-excitation in the hot gas (Böhringer 2010).",
    "CLUSTER": "A bound group of stars or galaxies; X-rays typically from bremsstrahlung.",
    "PULSAR": "A rapidly rotating neutron star emitting periodic pulses across the spectrum.",
    "TRANSIENT": "A source that brightens or appears only temporarily, for a variety of reasons.",
    "HMXRB": "High-Mass X-Ray Binary: a black hole or neutron star accretes matter from a high-mass companion; "
    "the hot matter shines in X-rays.",
    "AGN": "Active Galactic Nucleus: a galaxy's bright centre powered by accretion onto a supermassive black hole.",
    "SUPERGIANT": "A massive star; strong X-rays when its wind is accreted by a companion.",
    "PULSATOR": "An object with strong brightness variations, connected to neutron stars and/or accretion.",
    "BURSTER": "An object showing very sudden brightenings, often thermonuclear.",
    "REPEATER": "An object with recurrent bursts or flares.",
    "HARD": "Hard X-rays dominate: the emission is rich in high-energy photons.",
    "BINARY": "Two objects bound by gravity; X-rays when one accretes matter from the other.",
    "QSO": "Quasi-stellar object (quasar): an AGN of extreme luminosity.",
    "QPO": "Quasi-periodic oscillations: nearly periodic modulations of the X-ray flux.",
    "UNIDENTIFIED": "An X-ray source whose nature is not identified.",
    "UNCLASSIFIED": "Classification not done or not possible; the default tag.",
}
LABEL_TEXT = {
    label: f"Temporary: the source is in an open alert episode ({reason.replace('_', ' ')})."
    for reason, label in EPISODE_LABELS.items()
} | {OPEN_LABEL: "Temporary: an open alert episode."}


# ---------------------------------------------------------------------------------------------- formatting
def num(value: float | None, digits: int = 3) -> str:
    """A number for people: 3 significant digits, thousands separated, exponent only for tiny values."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    a = abs(value)
    if a == 0:
        return "0"
    if a >= 1000:
        return f"{value:,.0f}"
    if a >= 1e-3:
        text = f"{value:.{digits}g}"
        return f"{value:.0f}" if "e" in text else text
    return f"{value:.2e}"


def unit(text: str) -> str:
    return text.replace("cm2", "cm²")


def hms(ra: float, dec: float) -> str:
    """RA and Dec as sexagesimal text (J2000), 0.1 s and 0.1″. RA is rounded to 0.1 s of time before astropy
    writes it, so that 23h 59m 59.96s reads 00h 00m 00.0s, not 24h."""
    ra_angle = Angle(round(ra % 360.0 * 2400) / 2400 % 360.0, u.deg)  # 0.1 s of time is 1/2400 degree
    return (
        f"{ra_angle.to_string(unit=u.hourangle, sep=('h ', 'm ', 's'), precision=1, pad=True)}  "
        f"{Angle(dec, u.deg).to_string(unit=u.deg, sep=('° ', '′ ', '″'), precision=1, pad=True, alwayssign=True)}"
    )


def link(path: str, **params: Any) -> str:
    """A page address with its query; empty parameters left out."""
    query = urlencode([(k, v) for k, v in params.items() if v not in (None, "", [])], doseq=True)
    return f"{path}?{query}" if query else path


def environment(settings: Settings) -> Environment:
    """The pages' templates (services/api/templates), with the mails' filters: `mjd` is the bare number here."""
    env = templating.environment(
        "services.api",
        num=num,
        mjd=templating.mjd_number,
        unit=unit,
        q=lambda s: quote(str(s), safe=""),
        pairs=lambda xs: [(x, x) for x in xs],
    )
    base = urlsplit(settings.api_url).path.rstrip("/")
    env.globals.update(
        base=base,
        link=lambda path, **p: link(base + path, **p),
        instruments=INSTRUMENTS,
        units=UNITS,
        main_band=MAIN_BAND,
        series_titles=SERIES_TITLES,
        tag_text=TAG_TEXT | LABEL_TEXT,
        api_url=settings.api_url,
        hms=hms,
    )
    return env


def external_links(record: schemas.CatalogueSource) -> dict[str, str]:
    """SIMBAD and NED by name; HEASARC Browse (its master table) around the position, which always resolves."""
    name, position = quote(record.integral_name), f"{record.coord_ra:.5f}, {record.coord_dec:.5f}"
    browse = urlencode(
        {
            "tablehead": "name=heasarc_master",
            "Action": "Query",
            "Coordinates": "Equatorial",
            "Equinox": 2000,
            "Entry": position,
            "Radius": "Default",
        }
    )
    return {
        "SIMBAD": f"https://simbad.cds.unistra.fr/simbad/sim-id?Ident={name}",
        "NED": f"https://ned.ipac.caltech.edu/byname?objname={name}",
        "HEASARC": f"https://heasarc.gsfc.nasa.gov/db-perl/W3Browse/w3query.pl?{browse}",
    }


class Site:
    """The templates and what the pages share across requests: the home page's sky map of every catalogue source
    (2,410 dots) and the number of sources per instrument, drawn and counted once."""

    def __init__(self, settings: Settings, index: SourceIndex) -> None:
        self.env = environment(settings)
        records = list(index.records.values())
        self.instrument_counts = {k: sum(1 for r in records if k in r.instruments) for k in INSTRUMENTS}
        self.home_map = sky_map(records, 900)
        self.home_svg = Markup(
            self.env.from_string('{% from "macros.html.j2" import sky_svg %}{{ sky_svg(m) }}').render(m=self.home_map)
        )

    def page(self, name: str, status: int = 200, private: bool = False, **context: Any) -> HTMLResponse:
        """A page from its template; `private` ones (codes, secrets, tokens) are never stored by a cache."""
        headers = {"Cache-Control": "no-store"} if private else None
        return HTMLResponse(self.env.get_template(name).render(**context), status_code=status, headers=headers)

    def not_found(self, what: str, where: str, title: str) -> HTMLResponse:
        return self.page("error.html.j2", 404, title="Not found", message=what, see=where, see_title=title)
