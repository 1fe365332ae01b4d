"""Fusion heads: ``create(name, modalities=..., d_model=..., **options)`` and ``names()``.

Each head lives in its own module, listed in the table below and imported on first use; a head of
your own joins with ``@vemo.fusion.register("name")``.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from torch import nn

from vemo.errors import ConfigError
from vemo.fusion.base import FusionHead, masked_mean
from vemo.registry import Registry

FUSION_HEADS: Registry[nn.Module] = Registry("fusion head", fixed=("modalities", "d_model"), builtins={
    "concat_mlp": "vemo.fusion.concat_mlp:ConcatMLPFusion",
    "gated": "vemo.fusion.gated:GatedFusion",
    "crossattn": "vemo.fusion.crossattn:CrossAttentionFusion",
    "pairwise": "vemo.fusion.pairwise:PairwiseCrossAttentionFusion",
    "joint": "vemo.fusion.joint:JointTransformerFusion",
})
register = FUSION_HEADS.register


def create(name: str, *, modalities: Sequence[str], d_model: int, **options: Any) -> nn.Module:
    """Build the registered head ``name``; an unknown name or option lists the valid ones."""
    return FUSION_HEADS.create(name, modalities=modalities, d_model=d_model, **options)


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
