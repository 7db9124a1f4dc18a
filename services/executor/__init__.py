"""taskstream executor service."""
