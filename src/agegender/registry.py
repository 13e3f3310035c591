"""A small name → builder registry (the timm idea): configs name parts, the code looks them up."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from agegender.errors import AgeGenderError

T = TypeVar("T")


def options_of(target: Callable[..., Any]) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """For a builder that passes ``**kwargs`` on to ``target`` (a network class): give it a signature with
    ``target``'s keyword options, so :meth:`Registry.build` can refuse a misspelt one by name.

    >>> class Net:
    ...     def __init__(self, width=8): ...
    >>> @options_of(Net)
    ... def net(pretrained=False, **kwargs): return Net(**kwargs)
    >>> str(inspect.signature(net))
    '(pretrained=False, *, width=8)'
    """

    def deco(fn: Callable[..., T]) -> Callable[..., T]:
        own = [p for p in inspect.signature(fn).parameters.values() if p.kind is not p.VAR_KEYWORD]
        names = {p.name for p in own}
        extra = []
        for p in inspect.signature(target).parameters.values():
            if p.kind is p.VAR_KEYWORD:
                return fn  # the target takes anything: nothing to check
            if p.name not in names and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                extra.append(p.replace(kind=p.KEYWORD_ONLY))
        fn.__signature__ = inspect.Signature(own + extra)  # type: ignore[attr-defined]
        return fn

    return deco


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

    def unregister(self, name: str) -> None:
        """Remove ``name`` (no error if absent): for parts registered for a while, e.g. in tests."""
        self._items.pop(name, None)
        self._meta.pop(name, None)

    def get(self, name: str) -> Callable[..., T]:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "(none)"
            raise AgeGenderError(
                f"unknown {self.kind} {name!r}; choose one of: {known}", code=f"unknown_{self.kind}"
            ) from None

    def build(self, name: str, *args: Any, **kwargs: Any) -> T:
        """Build ``name`` with these arguments. Options the builder does not take (a misspelt config key)
        are a ``bad_config`` error naming the ones it does take; they are checked against its signature
        rather than by catching ``TypeError`` from the call, which would hide bugs inside the builder."""
        fn = self.get(name)
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError):  # some builtins have no signature: just call
            return fn(*args, **kwargs)
        try:
            sig.bind(*args, **kwargs)
        except TypeError as exc:
            takes = [p.name for p in sig.parameters.values() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
            raise AgeGenderError(f"{self.kind} {name!r}: {exc}; it takes: {', '.join(takes) or 'no options'}",
                                 code="bad_config") from None
        return fn(*args, **kwargs)

    def meta(self, name: str) -> dict[str, Any]:
        self.get(name)
        return dict(self._meta[name])

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
