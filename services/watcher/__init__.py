"""taskstream watcher service."""
