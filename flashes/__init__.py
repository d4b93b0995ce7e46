"""Shared pieces of FLASHES stream: settings, topics, catalogue, Kafka/QuestDB helpers, CLI."""
