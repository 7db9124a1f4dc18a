"""Typed task definitions, one object for both sides: ``@taskstream.task``.

    class Email(msgspec.Struct):
        to: str
        subject: str

    @taskstream.task("email.send", priority="high", max_attempts=3)
    async def send_email(email: Email, ctx: Context) -> None: ...

    send_email.submit(client, Email(to="ada@example.com", subject="hi"))        # Client
    await send_email.submit(aclient, {"to": "ada@example.com", "subject": "hi"})  # AsyncClient

The decorator registers the handler for executors as ``@handler`` does. When the payload
parameter is annotated with a msgspec Struct or a dataclass (or ``payload_type=`` names a type
msgspec can convert to), a submit validates the payload against it and sends its JSON form —
a payload that does not fit raises ``ValidationError`` naming the field before any request —
and the executor decodes each payload into that type for the handler; one that does not decode
fails its attempt without a retry (``PayloadError``). Untyped handlers get the JSON as it is.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

import msgspec

from taskstream.shared.client import errors
from taskstream.shared.client.models import OPTION_NAMES, Task
from taskstream.shared.client.protocols import AsyncSubmitter, Submitter
from taskstream.shared.errors import TaskstreamError
from taskstream.shared.handlers import Context, NonRetryableError, Registry, registry

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from taskstream.shared.client.models import SubmitOptions

P = TypeVar("P")
R = TypeVar("R")

# Options that make no sense as a definition's default: one key for every submit would make
# all but the first a replay of it; a fixed time is past soon after the code is written.
_NOT_DEFAULTS = frozenset({"idempotency_key", "run_at"})


class PayloadError(NonRetryableError):
    """A payload that does not decode into its task's payload type (the attempt fails and the
    task goes to the dead letters: the same payload would fail again)."""


class TaskDefinition(Generic[P, R]):
    """A task type with its handler, its payload type and its default options.

    Calling it calls the handler itself (``await send_email(payload, ctx)``); ``submit``
    sends a task of this type through a client; ``spec`` builds one item of
    ``client.submit_many``."""

    def __init__(
        self,
        task_type: str,
        fn: Callable[[P, Context], R],
        *,
        payload_type: Any = None,
        options: Mapping[str, Any] | None = None,
        transactional: bool = False,
    ) -> None:
        self.type = task_type
        self.fn = fn
        self.payload_type = payload_type
        self.options: dict[str, Any] = dict(options or {})
        self.transactional = transactional
        self.is_async = inspect.iscoroutinefunction(fn)
        functools.update_wrapper(self, fn)

    def __call__(self, payload: P, ctx: Context) -> R:
        return self.fn(payload, ctx)

    def __repr__(self) -> str:
        kind = getattr(self.payload_type, "__name__", None) or "untyped"
        return f"<task {self.type!r} ({kind} payload) -> {self.fn.__qualname__}>"

    def encode(self, payload: P | Mapping[str, Any] | None) -> Any:
        """The payload as it is sent: validated against the payload type (``ValidationError``
        naming the field otherwise) and turned into its JSON form."""
        if self.payload_type is None:
            return payload
        try:
            # Through the builtin form, as the executor will see it after JSON: this checks
            # the type's constraints too (msgspec checks them when it builds, not encodes).
            value = msgspec.convert(msgspec.to_builtins(payload), self.payload_type)
            return msgspec.to_builtins(value)
        except (msgspec.ValidationError, TypeError) as exc:
            raise errors.invalid(exc, "payload") from None

    def decode(self, payload: Any) -> P:
        """A payload as the handler gets it (``PayloadError`` if it does not decode)."""
        if self.payload_type is None:
            return typing.cast(P, payload)
        try:
            return typing.cast(P, msgspec.convert(payload, self.payload_type))
        except msgspec.ValidationError as exc:
            name = getattr(self.payload_type, "__name__", repr(self.payload_type))
            raise PayloadError(
                f"the payload of {self.type!r} is not a valid {name}: {exc}"
            ) from None

    def spec(
        self, payload: P | Mapping[str, Any] | None = None, **options: Unpack[SubmitOptions]
    ) -> dict[str, Any]:
        """One element of ``client.submit_many``: this type, the encoded payload, the
        definition's options overridden by ``options``."""
        return {"type": self.type, "payload": self.encode(payload), **self.options, **options}

    @overload
    def submit(
        self,
        client: AsyncSubmitter,
        payload: P | Mapping[str, Any] | None = None,
        **options: Unpack[SubmitOptions],
    ) -> Coroutine[Any, Any, Task]: ...

    @overload
    def submit(
        self,
        client: Submitter,
        payload: P | Mapping[str, Any] | None = None,
        **options: Unpack[SubmitOptions],
    ) -> Task: ...

    def submit(
        self,
        client: Submitter | AsyncSubmitter,
        payload: P | Mapping[str, Any] | None = None,
        **options: Unpack[SubmitOptions],
    ) -> Task | Coroutine[Any, Any, Task]:
        """Submit a task of this type: a ``Task`` from a ``Client``, an awaitable of one from
        an ``AsyncClient``. The payload is validated first (``ValidationError``, nothing
        sent); ``options`` override the definition's defaults."""
        merged: Any = {**self.options, **options}
        return client.submit(self.type, self.encode(payload), **merged)

    def handler(self) -> Callable[[Any, Context], Any]:
        """The function executors run: the handler, with the payload decoded first when the
        definition has a payload type (untyped: the handler itself, no extra step)."""
        if self.payload_type is None:
            return self.fn
        fn, decode = self.fn, self.decode
        if self.is_async:

            async def run_async(payload: Any, ctx: Context) -> Any:
                return await fn(decode(payload), ctx)  # type: ignore[misc]

            return functools.wraps(fn)(run_async)

        def run(payload: Any, ctx: Context) -> Any:
            return fn(decode(payload), ctx)

        return functools.wraps(fn)(run)


def payload_type_of(fn: Callable[..., Any]) -> Any:
    """The msgspec Struct or dataclass the first parameter of ``fn`` is annotated with, or
    None (no annotation, ``dict``, ``Any``…: the payload is passed as decoded from JSON)."""
    params = list(inspect.signature(fn).parameters.values())
    if len(params) < 2:
        raise TaskstreamError(f"{fn.__qualname__} must take (payload, ctx)")
    try:
        hints = typing.get_type_hints(fn)
    except NameError as exc:
        raise TaskstreamError(
            f"cannot resolve the annotations of {fn.__qualname__}: {exc} (define the payload "
            "type before the handler, at module level)"
        ) from None
    hint = hints.get(params[0].name)
    if isinstance(hint, type) and (
        issubclass(hint, msgspec.Struct) or dataclasses.is_dataclass(hint)
    ):
        return hint
    return None


def task(
    task_type: str,
    *,
    transactional: bool = False,
    payload_type: Any = None,
    registry: Registry = registry,
    **defaults: Unpack[SubmitOptions],
) -> Callable[[Callable[[P, Context], R]], TaskDefinition[P, R]]:
    """Define the task type ``task_type`` with the decorated function as its handler (see
    the module's docstring); ``defaults`` are its submit options (``priority``,
    ``max_attempts``, ``backoff``, ``timeout_ms``, ``delay_ms``, ``unique``), which a
    submit's own options override. ``transactional``: as for ``@handler``. ``payload_type``
    overrides the annotation. ``registry``: the executors' registry unless given."""
    bad = sorted(set(defaults) - (OPTION_NAMES - _NOT_DEFAULTS))
    if bad:
        raise TaskstreamError(f"{bad[0]!r} cannot be a default option of a task definition")

    def decorate(fn: Callable[[P, Context], R]) -> TaskDefinition[P, R]:
        chosen = payload_type if payload_type is not None else payload_type_of(fn)
        definition = TaskDefinition(
            task_type, fn, payload_type=chosen, options=defaults, transactional=transactional
        )
        registry.register(task_type, definition.handler(), transactional=transactional)
        return definition

    return decorate
