"""Alerts: alert episodes per source (onset, update, end) from relevance crossing the threshold (flashes.alerts.v3)."""
