"""Prometheus exposition: the names table and the collectors that read stored results."""
