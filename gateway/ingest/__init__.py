"""Meter ingest: verify signed readings from the meter node, store them, derive energy."""
