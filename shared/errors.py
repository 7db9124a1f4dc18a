"""The one base exception of taskstream and its few subclasses."""


class TaskstreamError(Exception):
    """Base class of every error taskstream raises on purpose."""


class ConfigError(TaskstreamError):
    """A configuration value is missing or does not make sense."""


class StoreUnavailable(TaskstreamError):
    """Redis or Postgres could not be reached."""


class IdempotencyConflict(TaskstreamError):
    """An idempotency key was reused with a different request body."""
