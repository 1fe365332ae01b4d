"""concat_mlp: masked mean per modality, concatenated, then an MLP. Order-blind by design."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from vemo.fusion.base import FusionHead, pooled_with_missing
from vemo.fusion.dropout import Dropout


class ConcatMLPFusion(FusionHead):
    def __init__(self, modalities: Sequence[str], d_model: int, hidden: int = 256, depth: int = 2,
                 dropout: float = 0.1):
        super().__init__(modalities, d_model)
        self.missing = nn.Parameter(torch.zeros(len(self.modalities), d_model))
        layers: list[nn.Module] = []
        width = d_model * len(self.modalities)
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.GELU(), Dropout(dropout)]
            width = hidden
        self.mlp = nn.Sequential(*layers)
        self.out_dim = width

    def no_weight_decay(self) -> set[str]:
        return {"missing"}  # the stand-in for an absent modality

    def forward(self, tokens: dict[str, Tensor], masks: dict[str, Tensor]) -> Tensor:
        xs, ms = self.checked_inputs(tokens, masks)
        pooled = [pooled_with_missing(x, m, self.missing[i]) for i, (x, m) in enumerate(zip(xs, ms))]
        return self.mlp(torch.cat(pooled, dim=-1))
