"""Relevance: scores every new point of every series 0..1 (flashes.relevance.v2)."""
