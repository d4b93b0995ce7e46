"""Sink: writes every topic into its QuestDB table (idempotent thanks to DEDUP UPSERT KEYS)."""
