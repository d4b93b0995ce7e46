"""Export the JSON Schema of every topic's contract into schemas/{topic}.schema.json."""

from __future__ import annotations

import json
from pathlib import Path

from flashes import topics

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"


def rendered() -> dict[Path, str]:
    return {
        SCHEMA_DIR / f"{t.name}.schema.json": json.dumps(t.model.model_json_schema(), indent=2, sort_keys=True) + "\n"
        for t in topics.ALL
    }


def export() -> list[Path]:
    for path, text in rendered().items():
        path.write_text(text)
    return list(rendered())
