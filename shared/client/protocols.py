"""What code that submits tasks needs of a client, as protocols: ``Client`` and
``AsyncClient`` fit them, and so do the recorders of ``taskstream.testing``."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from taskstream.shared.client.errors import ApiError
    from taskstream.shared.client.models import SubmitOptions, Task


class Submitter(Protocol):
    """What a handler or a task definition needs of a sync client: ``Client``, or
    ``taskstream.testing.Recorder`` in tests."""

    def submit(self, type: str, payload: Any = None, **options: Unpack[SubmitOptions]) -> Task: ...

    def submit_many(self, tasks: Iterable[Mapping[str, Any]]) -> list[Task | ApiError]: ...

    def get(self, task: str | uuid.UUID) -> Task: ...

    def cancel(self, task: str | uuid.UUID) -> Task: ...


class AsyncSubmitter(Protocol):
    """The same of an asyncio client: ``AsyncClient``, or ``taskstream.testing.AsyncRecorder``."""

    async def submit(
        self, type: str, payload: Any = None, **options: Unpack[SubmitOptions]
    ) -> Task: ...

    async def submit_many(self, tasks: Iterable[Mapping[str, Any]]) -> list[Task | ApiError]: ...

    async def get(self, task: str | uuid.UUID) -> Task: ...

    async def cancel(self, task: str | uuid.UUID) -> Task: ...
