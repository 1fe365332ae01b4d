"""The fusion-head contract and helpers every head shares.

A head maps ``tokens: {m: float[B, T, d]}`` and ``masks: {m: bool[B, T]}`` (True = real token) to
``float[B, out_dim]``. It walks modalities in sorted order, and padded or missing tokens never
change its output: heads zero them on entry and exclude them from every pooling and attention.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn



class FusionHead(nn.Module):
    """Base of the heads: sorted modalities, ``d_model``, ``out_dim``, checked inputs.

    ``no_weight_decay`` names the head's parameters that weight decay must leave alone (learned
    tokens, embeddings), relative to the head, as timm models do; norms and biases never decay.
    """

    out_dim: int

    def __init__(self, modalities: Sequence[str], d_model: int):
        super().__init__()
        if not modalities:
            raise ValueError("a fusion head needs at least one modality")
        self.modalities = sorted(modalities)
        self.d_model = int(d_model)

    def no_weight_decay(self) -> set[str]:
        return set()

    def checked_inputs(self, tokens: dict[str, Tensor], masks: dict[str, Tensor]
                       ) -> tuple[list[Tensor], list[Tensor]]:
        """Tokens and masks in sorted modality order, padded positions zeroed (even NaN garbage)."""
        missing = [m for m in self.modalities if m not in tokens or m not in masks]
        if missing:
            raise KeyError(f"fusion head built for {self.modalities} got no input for {missing}")
        xs, ms = [], []
        for m in self.modalities:
            x, mask = tokens[m], masks[m].bool()
            if x.shape[:2] != mask.shape or x.shape[-1] != self.d_model:
                raise ValueError(f"modality {m!r}: tokens {tuple(x.shape)} do not match mask "
                                 f"{tuple(mask.shape)} and d_model={self.d_model}")
            xs.append(torch.where(mask.unsqueeze(-1), x, torch.zeros((), dtype=x.dtype, device=x.device)))
            ms.append(mask)
        return xs, ms


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean over real tokens: [B, T, d] -> [B, d]; rows with no real token give zeros."""
    weights = mask.to(x.dtype).unsqueeze(-1)
    x = torch.where(mask.unsqueeze(-1), x, torch.zeros((), dtype=x.dtype, device=x.device))
    return (x * weights).sum(1) / weights.sum(1).clamp_min(1.0)


def pooled_with_missing(x: Tensor, mask: Tensor, missing: Tensor) -> Tensor:
    """Masked mean, with a learned vector standing in for a modality a video lacks entirely."""
    present = mask.any(1, keepdim=True)
    return torch.where(present, masked_mean(x, mask), missing.expand(x.shape[0], -1))
