"""The seed's 23 tags, given to a source by the words of its HEASARC class name.

A tag applies when one of its phrases occurs in the class name as whole words (case-insensitive),
so "LMXRB, QPO & black hole, hard transient" is LMXRB, BINARY, QPO, BLACK HOLE, HARD and TRANSIENT.
Some phrases stand for a wider tag: an X-ray binary (LMXRB, HMXRB) or a CV, RS CVn, Algol, Beta Lyr
or symbiotic star is also BINARY; a Seyfert, QSO, BL Lac, LINER or radio galaxy is also AGN.
UNCLASSIFIED is the default when no other tag applies (as in the seed), so "AGN Unclassified" is AGN.
"""

from __future__ import annotations

import re

UNCLASSIFIED = "UNCLASSIFIED"

PHRASES: dict[str, tuple[str, ...]] = {
    "LMXRB": ("lmxrb",),
    "HMXRB": ("hmxrb",),
    "BINARY": ("binary", "lmxrb", "hmxrb", "cv", "rs cvn", "algol", "beta lyr", "symbiotic"),
    "SEYFERT GALAXY": ("seyfert",),
    "AGN": ("agn", "seyfert", "qso", "bl lac", "liner", "radio galaxy"),
    "QSO": ("qso",),
    "BL LAC": ("bl lac",),
    "GLOBULAR CLUSTER": ("globular cluster",),
    "GALAXY CLUSTER": ("cluster of galaxies", "group of galaxies"),
    "CLUSTER": ("cluster",),
    "GAMMA RAY SOURCE": ("gamma ray",),
    "BE STAR": ("be star",),
    "BLACK HOLE": ("black hole",),
    "PULSAR": ("pulsar",),
    "PULSATOR": ("pulsator",),
    "TRANSIENT": ("transient",),
    "SUPERGIANT": ("supergiant",),
    "BURSTER": ("burster", "bursts"),
    "REPEATER": ("repeater",),
    "HARD": ("hard",),
    "QPO": ("qpo",),
    "UNIDENTIFIED": ("unidentified",),
}
TAGS: tuple[str, ...] = (*PHRASES, UNCLASSIFIED)
_PATTERNS = {tag: re.compile("|".join(rf"\b{re.escape(p)}\b" for p in phrases)) for tag, phrases in PHRASES.items()}


def class_name(words: list[str]) -> str:
    """The full class name from the decoded words of a code, e.g. 'LMXRB, burster, hard transient'."""
    return ", ".join(words)


def words_of(name: str) -> str:
    """A class name as the tags read it: lower case, words only, so that HEASARC's "HMXRB SUPERGIANT X-RAY
    PULSAR ECLIPSING" and the bundled table's "HMXRB supergiant, X-ray pulsar, eclipsing" read the same."""
    return re.sub(r"[^a-z0-9]+", " ", name.lower()).strip()


def tags_of(name: str) -> list[str]:
    """The seed tags whose phrases the class name contains (in the order of TAGS); UNCLASSIFIED if none.

    >>> tags_of("HMXRB Be star, X-ray pulsar, hard transient")
    ['HMXRB', 'BINARY', 'BE STAR', 'PULSAR', 'TRANSIENT', 'HARD']
    >>> tags_of("AGN Unclassified")
    ['AGN']
    """
    text = words_of(name)
    return [tag for tag, pattern in _PATTERNS.items() if pattern.search(text)] or [UNCLASSIFIED]
