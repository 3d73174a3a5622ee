"""Metrics sources: where the number in each agenda comes from (a CSV export today)."""
