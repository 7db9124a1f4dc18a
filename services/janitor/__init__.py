"""taskstream janitor service."""
