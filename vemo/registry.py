"""A tiny name -> factory registry shared by fusion heads, extractors and dataset adapters."""
from __future__ import annotations

import importlib
from typing import Any, Callable, Generic, TypeVar

from vemo.errors import VemoError

T = TypeVar("T")


class UnknownNameError(VemoError, KeyError):
    """Raised for a name that is not registered; the message lists the valid names."""


class Registry(Generic[T]):
    """Maps names to factories. ``create`` is the one way the library builds registered things."""

    def __init__(self, kind: str):
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            existing = self._factories.get(name)
            if isinstance(existing, str) and existing == f"{factory.__module__}:{factory.__qualname__}":
                existing = None  # the lazy entry pointing at this very factory is being imported
            if existing is not None and existing is not factory:
                raise ValueError(f"{self.kind} {name!r} is already registered by {existing!r}")
            self._factories[name] = factory
            return factory

        return decorator

    def register_lazy(self, name: str, target: str) -> None:
        """Register ``"package.module:attr"`` without importing it: heavy extractors (Whisper, OCR,
        ONNX runtimes) are imported only when someone builds them."""
        if ":" not in target:
            raise ValueError(f"lazy {self.kind} target must look like 'module:attr', got {target!r}")
        existing = self._factories.get(name)
        if existing is not None and existing != target:
            raise ValueError(f"{self.kind} {name!r} is already registered by {existing!r}")
        self._factories[name] = target  # type: ignore[assignment]

    def get(self, name: str) -> Callable[..., T]:
        try:
            factory = self._factories[name]
        except KeyError:
            valid = ", ".join(self.names()) or "(none registered)"
            raise UnknownNameError(f"unknown {self.kind} {name!r}; valid names: {valid}") from None
        if isinstance(factory, str):
            module_name, attr = factory.split(":", 1)
            factory = getattr(importlib.import_module(module_name), attr)
            self._factories[name] = factory
        return factory

    def create(self, name: str, **kwargs: Any) -> T:
        return self.get(name)(**kwargs)

    def names(self) -> list[str]:
        return sorted(self._factories)

    def __contains__(self, name: object) -> bool:
        return name in self._factories
