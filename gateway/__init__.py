"""The household gateway: ingest, forecast, negotiate, sign and settle."""
