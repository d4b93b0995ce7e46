"""Alerts: turns relevance crossing the threshold into alerts (Kafka topic, signed webhooks)."""
