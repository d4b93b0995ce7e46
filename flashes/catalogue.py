"""The source catalogue: data/master_table.csv turned into source records (schemas.CatalogueSource) with the
seed's fields.

Each record has `_id` (INTEGRAL name without spaces, lower case), coordinates (equatorial from
the table, galactic computed with astropy), alternative names, the HEASARC class name of its code
with the seed's tags drawn from it (flashes/tags.py), and one object per instrument with its data
URL and series key. Class names come from HEASARC's class table when the catalogue is refreshed
online (flashes/heasarc.py); otherwise, and for codes that table lacks, from the bundled
data/heasarc_classes.csv decoded here.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from astropy import units as u
from astropy.coordinates import SkyCoord

import schemas
from flashes.settings import Settings
from flashes.tags import UNCLASSIFIED, class_name, tags_of, words_of
from flashes.topics import catalogue_series

NO_NAME = {"", "-", "-- -- --"}


class HeasarcClasses:
    """Decoder of four-digit HEASARC class codes, following data/heasarc_classes.md."""

    def __init__(self, path: Path) -> None:
        self.majors: dict[int, str] = {}
        self.modifiers: list[tuple[int, int, str, int, str]] = []  # lo, hi, position, value, meaning
        with path.open(newline="") as fh:
            for row in csv.DictReader(fh):
                pattern, position, meaning = row["code_pattern"], row["digit_position"], row["meaning"]
                if position == "major":
                    self.majors[int(pattern)] = meaning
                    continue
                bounds = [int(x) for x in re.findall(r"\b\d{4}\b", row["scope"])]
                lo, hi = (bounds[0], bounds[-1])
                # Wolf-Rayet sub-types are printed as two digits but occupy the fourth digit.
                value = int(pattern) // 10 if position.startswith("fourth") and len(pattern) == 2 else int(pattern)
                self.modifiers.append((lo, hi, position.split()[0], value, meaning))

    def _modifier(self, base: int, position: str, value: int, printed_zero_only: bool) -> str | None:
        for lo, hi, pos, val, meaning in self.modifiers:
            if pos == position and val == value and lo <= base <= hi:
                if value == 0 and not printed_zero_only:
                    continue
                return None if meaning.startswith("(listed with no meaning") else meaning
        return None

    def words(self, code: int) -> list[str]:
        """Words for a class code, e.g. 1455 -> ['LMXRB', 'QPO & black hole', 'soft transient']."""
        if code in self.majors:
            return [self.majors[code]]
        decade, century = code // 10 * 10, code // 100 * 100
        if decade in self.majors and decade != century:  # flat list entry plus a fourth digit (1981)
            base, digits = decade, [("fourth", code % 10)]
        elif century in self.majors:
            base, digits = century, [("third", code // 10 % 10 * 10), ("fourth", code % 10)]
        else:
            return [UNCLASSIFIED]
        words = [self.majors[base]]
        for position, value in digits:
            meaning = self._modifier(base, position, value, printed_zero_only=value == 0)
            if meaning:
                words.append(meaning)
        return words


def differing_names(classes: HeasarcClasses, names: Mapping[int, str]) -> list[int]:
    """The codes that `names` (HEASARC's class table) names with other words than the bundled table decodes
    them to; codes the bundled table cannot decode are left out."""
    return sorted(
        code
        for code, name in names.items()
        if (words := classes.words(code)) != [UNCLASSIFIED] and words_of(name) != words_of(class_name(words))
    )


def source_id(integral_name: str) -> str:
    return integral_name.replace(" ", "").lower()


def _present(value: str, absent: str) -> bool:
    return bool(value) and value != absent


def data_urls(
    settings: Settings, maxi_id: str | None, swift_id: str | None, swift_weak: bool, fermi_id: str | None
) -> dict[str, str | None]:
    paths = {
        "maxi": f"star_data/{maxi_id}/{maxi_id}_g_lc_1day_all.dat" if maxi_id else None,
        "swift": f"results/transients/{'weak/' if swift_weak else ''}{swift_id}.lc.txt" if swift_id else None,
        "fermi": f"{fermi_id}_old.fits.gz" if fermi_id else None,
    }
    return {inst: settings.base_urls[inst].rstrip("/") + "/" + path if path else None for inst, path in paths.items()}


def path_below_base(settings: Settings, instrument: str, url: str) -> str:
    """Where a data URL's file lies below its provider's base URL (its place in a mirror folder)."""
    return url[len(settings.base_urls[instrument].rstrip("/")) + 1 :]


def _series(kind: str, sid: str, url: str | None, provider_id: str | None) -> schemas.CatalogueSeries:
    return schemas.CatalogueSeries(data_url=url, provider_id=provider_id, series=catalogue_series(kind, sid))


def build(settings: Settings, heasarc_names: Mapping[int, str] | None = None) -> list[schemas.CatalogueSource]:
    """The records of the master table; a class is named by `heasarc_names` (HEASARC's class table) when it has
    the code, else by the bundled table."""
    heasarc_names = heasarc_names or {}
    table = pd.read_csv(settings.master_table, dtype=str, keep_default_na=False)
    classes = HeasarcClasses(settings.heasarc_classes)
    ra = table["Ra Obj"].astype(float).to_numpy()
    dec = table["Dec Obj"].astype(float).to_numpy()
    galactic = SkyCoord(ra=ra * u.deg, dec=dec * u.deg, frame="icrs").galactic
    records = []
    for i, row in enumerate(table.to_dict("records")):
        sid = source_id(row["Integral Name"])
        maxi_id = row["Maxi ID"] if _present(row["Maxi ID"], "noMaxi") else None
        swift_id = row["Swift ID"] if _present(row["Swift ID"], "noSwift") else None
        fermi_id = row["Fermi ID"] if _present(row["Fermi ID"], "noFermi") else None
        urls = data_urls(settings, maxi_id, swift_id, row["Swift Weak"] == "yes", fermi_id)
        names = [n.strip() for n in row["Integral Alt Names"].split(",") if n.strip() not in NO_NAME]
        for other, absent in (
            (row["Maxi Name"], "noMaxi"),
            (row["Swift Name"], "noSwift"),
            (row["Fermi Name"], "noFermi"),
        ):
            for name in other.split(","):
                if (
                    _present(name.strip(), absent)
                    and name.strip() != row["Integral Name"]
                    and name.strip() not in names
                ):
                    names.append(name.strip())
        code = int(row["Class"]) if row["Class"].isdigit() else 0
        name = heasarc_names.get(code) or class_name(classes.words(code))
        both = maxi_id is not None and swift_id is not None
        records.append(
            schemas.CatalogueSource(
                id=sid,
                integral_name=row["Integral Name"],
                class_code=code,
                coord_ra=float(ra[i]),
                coord_dec=float(dec[i]),
                coord_glon=float(np.round(galactic.l.deg[i], 6)),
                coord_glat=float(np.round(galactic.b.deg[i], 6)),
                alternative_names=names,
                class_name=name,
                labels_constant=tags_of(name),
                maxi=_series("maxi", sid, urls["maxi"], maxi_id) if maxi_id else None,
                swift=_series("swift", sid, urls["swift"], swift_id) if swift_id else None,
                fermi=_series("fermi", sid, urls["fermi"], fermi_id) if fermi_id else None,
                hardness_ratio=_series("hardness", sid, None, None) if both else None,
                combined=_series("combined", sid, None, None) if both else None,
            )
        )
    return records


def _built_for(settings: Settings) -> dict[str, str]:
    """What a stored catalogue depends on besides the table: the provider base URLs."""
    return {**settings.base_urls, "master_table": str(settings.master_table), "format": "2 (seed tags)"}


def write(settings: Settings, heasarc_names: Mapping[int, str] | None = None) -> Path:
    """Build the catalogue and store it where the API and the fetcher read it. Which table named the classes is
    kept beside `built_for`, not in it, so that `load` keeps HEASARC's names instead of rebuilding offline."""
    path = settings.catalogue_path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    # json.dumps of the records' dicts, not pydantic's compact JSON: format 2 of `built_for`, byte for byte.
    tmp.write_text(
        json.dumps(
            {
                "built_for": _built_for(settings),
                "class_names": "HEASARC" if heasarc_names else "bundled",
                "sources": [r.model_dump(mode="json") for r in build(settings, heasarc_names)],
            }
        )
    )
    tmp.replace(path)
    return path


def load(settings: Settings) -> list[schemas.CatalogueSource]:
    """The stored catalogue; (re)built first if missing or made for other provider URLs or in another format."""
    path = settings.catalogue_path
    stored = json.loads(path.read_text()) if path.exists() else {}
    if stored.get("built_for") != _built_for(settings):
        write(settings)
        stored = json.loads(path.read_text())
    return [schemas.CatalogueSource.model_validate(r) for r in stored["sources"]]
