"""Fusion heads: ``create(name, modalities=..., d_model=..., **options)`` and ``names()``.

Each head lives in its own module and registers itself; importing this package registers them all.
"""
from __future__ import annotations

from typing import Any, Sequence

from torch import nn

from vemo.fusion.base import FUSION_HEADS, FusionHead, masked_mean
from vemo.fusion import concat_mlp, crossattn, gated  # noqa: F401  (registration side effect)

register = FUSION_HEADS.register


def create(name: str, *, modalities: Sequence[str], d_model: int, **options: Any) -> nn.Module:
    """Build the registered head ``name``; an unknown name raises an error listing the valid ones."""
    factory = FUSION_HEADS.get(name)
    try:
        return factory(modalities=modalities, d_model=d_model, **options)
    except TypeError as e:
        raise TypeError(f"fusion head {name!r}: {e}") from None


def names() -> list[str]:
    return FUSION_HEADS.names()


__all__ = ["FusionHead", "create", "masked_mean", "names", "register"]
