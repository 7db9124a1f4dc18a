"""Wrapping every public coroutine method of a class (how each store layer puts its error
boundary on all of its operations at once)."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

C = TypeVar("C", bound=type)
Wrap = Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]


def wrap_public(cls: C, wrap: Wrap) -> C:
    """Apply ``wrap`` to every public coroutine method (and class method) defined on ``cls``
    itself; inherited ones were wrapped on their own class."""
    for name, value in list(vars(cls).items()):
        if name.startswith("_"):
            continue
        if isinstance(value, classmethod) and inspect.iscoroutinefunction(value.__func__):
            setattr(cls, name, classmethod(wrap(value.__func__)))
        elif inspect.iscoroutinefunction(value):
            setattr(cls, name, wrap(value))
    return cls
