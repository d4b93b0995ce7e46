"""The catalogue built from data/master_table.csv: ids, coordinates, tags, series and URLs."""

import json
from pathlib import Path

import pytest

import schemas
from flashes import catalogue, tags
from flashes.settings import PROJECT_ROOT, Settings

Records = dict[str, schemas.CatalogueSource]


@pytest.fixture(scope="module")
def records() -> Records:
    live = Settings(
        maxi_base_url="http://maxi.riken.jp/",
        swift_base_url="https://swift.gsfc.nasa.gov/",
        fermi_base_url="https://gammaray.nsstc.nasa.gov/gbm/science/pulsars/lightcurves/",
    )
    return {r.id: r for r in catalogue.build(live)}


@pytest.fixture(scope="module")
def classes() -> catalogue.HeasarcClasses:
    return catalogue.HeasarcClasses(PROJECT_ROOT / "data" / "heasarc_classes.csv")


def test_every_row_becomes_one_record_with_a_unique_id(records: Records) -> None:
    assert len(records) == 2410
    assert sum(r.maxi is not None for r in records.values()) == 322
    assert sum(r.swift is not None for r in records.values()) == 662
    assert sum(r.fermi is not None for r in records.values()) == 36


def test_gx339_record(records: Records) -> None:
    r = records["gx339-4"]
    assert r.integral_name == "GX 339-4"
    assert r.class_name == "LMXRB, QPO & black hole, hard transient"  # class 1456
    assert r.labels_constant == ["LMXRB", "BINARY", "BLACK HOLE", "TRANSIENT", "HARD", "QPO"]
    assert r.maxi.series == "maxi_gx339-4"
    assert r.maxi.data_url == "http://maxi.riken.jp/star_data/J1702-487/J1702-487_g_lc_1day_all.dat"
    assert r.swift.data_url == "https://swift.gsfc.nasa.gov/results/transients/weak/GX339-4.lc.txt"
    assert r.hardness_ratio.series == "hardness_gx339-4" and r.combined.series == "combined_gx339-4"
    assert r.fermi is None
    assert "4U 1658-48" in r.alternative_names
    # GX 339-4: l = 338.94°, b = -4.33° (SIMBAD)
    assert r.coord_glon == pytest.approx(338.94, abs=0.01) and r.coord_glat == pytest.approx(-4.33, abs=0.01)


def test_gbm_pulsar_url_and_no_joined_series_without_both_instruments(records: Records) -> None:
    r = records["velax-1"]
    assert r.fermi.data_url.endswith("/velax1_old.fits.gz")
    only_maxi = next(r for r in records.values() if r.maxi and not r.swift)
    assert only_maxi.hardness_ratio is None and only_maxi.combined is None


@pytest.mark.parametrize(
    "code, words",
    [
        (1316, ["HMXRB Be star", "X-ray pulsar", "hard transient"]),
        (7106, ["Seyfert", "type 2"]),
        (1440, ["LMXRB", "QPO"]),
        (9999, ["unidentified"]),
        (2555, ["star, spectral type G", "spectral sub-type 5", "luminosity class V"]),
        (1213, ["HMXRB supergiant", "X-ray pulsar", "eclipsing"]),
        (1810, ["X-ray pulsator"]),
        (1981, ["T Tauri star", "(naked)"]),
        (1635, ["CV", "AM Her (polar)", "eclipsing"]),
        (0, [tags.UNCLASSIFIED]),
        (8765, [tags.UNCLASSIFIED]),
    ],
)
def test_heasarc_codes_decode_as_the_worked_examples(
    classes: catalogue.HeasarcClasses, code: int, words: list[str]
) -> None:
    assert classes.words(code) == words


@pytest.mark.parametrize(
    "code, expected",
    [  # checked by hand against the class name of each code
        (1456, {"LMXRB", "BINARY", "QPO", "BLACK HOLE", "TRANSIENT", "HARD"}),  # GX 339-4
        (1316, {"HMXRB", "BINARY", "BE STAR", "PULSAR", "TRANSIENT", "HARD"}),  # Swift J0243.6+6124
        (1213, {"HMXRB", "BINARY", "SUPERGIANT", "PULSAR"}),  # eclipsing supergiant pulsar
        (1526, {"LMXRB", "BINARY", "GLOBULAR CLUSTER", "CLUSTER", "BURSTER", "TRANSIENT", "HARD"}),
        (1480, {"LMXRB", "BINARY", "QPO", "PULSAR", "BURSTER"}),  # "QPO,pulsar,bursts"
        (1721, {"GAMMA RAY SOURCE", "REPEATER", "PULSAR"}),  # soft gamma repeater
        (1810, {"PULSATOR"}),  # X-ray pulsator, not a pulsar
        (7106, {"SEYFERT GALAXY", "AGN"}),  # Seyfert type 2
        (7900, {"SEYFERT GALAXY", "AGN"}),  # narrow-line Seyfert 1
        (7204, {"QSO", "AGN"}),
        (7311, {"BL LAC", "AGN"}),
        (7000, {"AGN"}),  # "AGN Unclassified"
        (5000, {"GALAXY CLUSTER", "CLUSTER"}),
        (3600, {"CLUSTER"}),  # open star cluster
        (1640, {"BINARY"}),  # CV, intermediate polar
        (9999, {"UNIDENTIFIED"}),
        (2900, {tags.UNCLASSIFIED}),  # "Star": no seed word
        (0, {tags.UNCLASSIFIED}),
    ],
)
def test_seed_tags_from_the_class_name(classes: catalogue.HeasarcClasses, code: int, expected: set[str]) -> None:
    assert set(tags.tags_of(tags.class_name(classes.words(code)))) == expected


def test_every_source_has_seed_tags_only(records: Records) -> None:
    used = {t for r in records.values() for t in r.labels_constant}
    assert used <= set(tags.TAGS) and len(tags.TAGS) == 23
    assert all(r.labels_constant and r.class_name for r in records.values())


# The stored record's fields in the seed's order, as the dict records of format 2 wrote them.
SEED_FIELDS = [
    "_id",
    "integral_name",
    "class_code",
    "coord_ra",
    "coord_dec",
    "coord_glon",
    "coord_glat",
    "alternative_names",
    "class_name",
    "labels_constant",
    "labels_dynamic",
    "maxi",
    "swift",
    "fermi",
    "hardness_ratio",
    "combined",
]
SEED_SERIES_FIELDS = ["data_url", "provider_id", "series", "last_timestamp", "last_flux", "last_error"]


def test_a_stored_catalogue_keeps_the_seed_format_byte_for_byte(tmp_path: Path) -> None:
    """A file written before the records were typed loads as it is (same `built_for`), and writing the loaded
    records gives the same bytes: the stored file and the API's `_id` stay what they were."""
    settings = Settings(var_dir=tmp_path)
    text = catalogue.write(settings).read_text()
    stored = json.loads(text)
    gx339 = next(r for r in stored["sources"] if r["_id"] == "gx339-4")
    assert list(gx339) == SEED_FIELDS and list(gx339["maxi"]) == SEED_SERIES_FIELDS
    loaded = catalogue.load(settings)
    assert all(isinstance(r, schemas.CatalogueSource) for r in loaded) and len(loaded) == 2410
    assert json.dumps({**stored, "sources": [r.model_dump(mode="json") for r in loaded]}) == text
    assert catalogue.write(settings).read_text() == text


def test_a_stored_record_the_contract_refuses_is_not_loaded(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path)
    stored = json.loads(catalogue.write(settings).read_text())
    stored["sources"][0]["colour"] = "blue"
    settings.catalogue_path.write_text(json.dumps(stored))
    with pytest.raises(ValueError, match="colour"):
        catalogue.load(settings)
