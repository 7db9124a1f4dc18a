"""taskstream services: ingest, executor, watcher, janitor, and the CLI."""
