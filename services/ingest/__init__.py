"""taskstream ingest service."""
