"""A small name → builder registry (the timm idea): configs name parts, the code looks them up."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from agegender.errors import AgeGenderError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to builders. ``register`` is usable as a decorator.

    >>> TRUNKS = Registry("trunk")
    >>> @TRUNKS.register("tiny")
    ... def tiny(**kw): return "built"
    >>> TRUNKS.build("tiny")
    'built'
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, Callable[..., T]] = {}
        self._meta: dict[str, dict[str, Any]] = {}

    def register(self, name: str, **meta: Any) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def deco(fn: Callable[..., T]) -> Callable[..., T]:
            if name in self._items and self._items[name] is not fn:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._items[name] = fn
            self._meta[name] = meta
            return fn

        return deco

    def get(self, name: str) -> Callable[..., T]:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "(none)"
            raise AgeGenderError(
                f"unknown {self.kind} {name!r}; choose one of: {known}", code=f"unknown_{self.kind}"
            ) from None

    def build(self, name: str, *args: Any, **kwargs: Any) -> T:
        return self.get(name)(*args, **kwargs)

    def meta(self, name: str) -> dict[str, Any]:
        self.get(name)
        return dict(self._meta[name])

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
