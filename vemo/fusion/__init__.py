"""Fusion heads: ``create(name, modalities=..., d_model=..., **options)`` and ``names()``.

Each head lives in its own module and registers itself; importing this package registers them all.
"""
from __future__ import annotations

import inspect
from typing import Any, Mapping, Sequence

from torch import nn

from vemo.errors import ConfigError
from vemo.fusion.base import FUSION_HEADS, FusionHead, masked_mean
from vemo.fusion import concat_mlp, crossattn, gated, joint, pairwise  # noqa: F401  (registration side effect)

register = FUSION_HEADS.register


def create(name: str, *, modalities: Sequence[str], d_model: int, **options: Any) -> nn.Module:
    """Build the registered head ``name``; an unknown name raises an error listing the valid ones."""
    factory = FUSION_HEADS.get(name)
    params = inspect.signature(factory).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        own = [p for p in params if p not in ("self", "modalities", "d_model")]
        unknown = sorted(set(options) - set(own))
        if unknown:
            raise ConfigError(f"fusion head {name!r} has no option {', '.join(map(repr, unknown))}; "
                              f"its options: {', '.join(own) or '(none)'}")
    try:
        return factory(modalities=modalities, d_model=d_model, **options)
    except (TypeError, ValueError) as e:  # a bad value in the fusion config
        message = str(e).removeprefix(f"{name}: ")
        raise ConfigError(f"fusion head {name!r}: {message}") from None


def fusion_options(spec: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Split a fusion config (``name`` of a registered head plus its options) into name and options.

    The one route from a config to a head: ``create(name, **options)``.
    """
    spec = dict(spec)
    if "_target_" in spec:
        raise ConfigError(f"fusion._target_={spec['_target_']!r}: fusion heads are built from the registry by "
                          "name; register your head with @vemo.fusion.register('name') and set fusion.name")
    if "name" not in spec:
        raise ConfigError(f"the fusion config needs a 'name'; registered heads: {', '.join(names())}")
    name = spec.pop("name")
    return name, spec


def names() -> list[str]:
    return FUSION_HEADS.names()


__all__ = ["FusionHead", "create", "fusion_options", "masked_mean", "names", "register"]
