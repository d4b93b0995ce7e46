"""Derive: hardness ratio and combined flux per source and UTC day (flashes.derived.v2)."""
