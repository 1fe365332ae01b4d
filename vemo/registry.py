"""The one name -> factory registry of vemo: fusion heads, extractors and benchmark adapters.

Each registry lists its built-in entries as a table of ``"module:attr"`` targets, imported only when
an entry is first used (so ``import vemo`` never loads Whisper, OCR or ONNX runtimes), and takes
users' own entries with the ``register(name)`` decorator. ``create`` is the one way the library
builds a registered thing, and the one place an unknown option is refused.
"""
from __future__ import annotations

import importlib
import inspect
from typing import Any, Callable, Generic, Mapping, Sequence, TypeVar

from vemo.errors import ConfigError, VemoError

T = TypeVar("T")


class UnknownNameError(VemoError, KeyError):
    """Raised for a name that is not registered; the message lists the valid names."""


class Registry(Generic[T]):
    """Maps names to factories.

    Args:
        kind: what the entries are, as error messages say it ("fusion head", "extractor").
        builtins: name -> ``"package.module:attr"``, imported on first use.
        fixed: arguments the library itself passes to every factory (e.g. a head's ``modalities``),
            not options a user sets; they are left out of the option check and of ``options``.
    """

    def __init__(self, kind: str, builtins: Mapping[str, str] | None = None, fixed: Sequence[str] = ()):
        self.kind = kind
        self.fixed = tuple(fixed)
        self._factories: dict[str, Callable[..., T] | str] = {}
        for name, target in (builtins or {}).items():
            if ":" not in target:
                raise ValueError(f"built-in {kind} target must look like 'module:attr', got {target!r}")
            self._factories[name] = target

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """``@registry.register("name")`` on a class or function adds it under ``name``."""
        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            existing = self._factories.get(name)
            if existing is not None and existing is not factory:
                raise ValueError(f"{self.kind} {name!r} is already registered by {existing!r}")
            self._factories[name] = factory
            return factory

        return decorator

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

    def options(self, name: str) -> list[str] | None:
        """The options entry ``name`` takes (its factory's parameters less the fixed ones), or None
        when it takes any (``**kwargs``)."""
        params = inspect.signature(self.get(name)).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return None
        return [p for p in params if p not in ("self", *self.fixed)]

    def create(self, name: str, **kwargs: Any) -> T:
        """Build entry ``name``. An unknown name lists the valid ones, an unknown option lists the
        entry's options, and a bad value (the factory's TypeError, ValueError or ConfigError) is a
        ConfigError that names the entry."""
        factory = self.get(name)
        own = self.options(name)
        if own is not None:
            unknown = sorted(set(kwargs) - set(own) - set(self.fixed))
            if unknown:
                raise ConfigError(f"{self.kind} {name!r} has no option {', '.join(map(repr, unknown))}; "
                                  f"its options: {', '.join(own) or '(none)'}")
        try:
            return factory(**kwargs)
        except (TypeError, ValueError) as e:
            if isinstance(e, VemoError) and not isinstance(e, ConfigError):
                raise  # a data or model error names its own file
            raise ConfigError(f"{self.kind} {name!r}: {str(e).removeprefix(f'{name}: ')}") from None

    def names(self) -> list[str]:
        return sorted(self._factories)

    def __contains__(self, name: object) -> bool:
        return name in self._factories
