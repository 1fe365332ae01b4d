"""joint: the published trailer transformer, with masks.

All modalities form one sequence: a CLS token, then per modality a learned separator token
followed by its tokens, each modality with its own learned positions (the separator takes
position 0). A transformer encoder runs over it and the CLS token is the output. Padded and
missing tokens are excluded as keys; the separators are always present, so a video missing a
modality still says which one. The last layer computes only the CLS row, the only one read.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from vemo.fusion.attention import MaskedSelfAttentionLayer
from vemo.fusion.base import FusionHead


class JointTransformerFusion(FusionHead):
    def __init__(self, modalities: Sequence[str], d_model: int, depth: int = 2, num_heads: int = 8,
                 ff_mult: int = 4, dropout: float = 0.1, max_positions: int = 256, activation: str = "gelu"):
        super().__init__(modalities, d_model)
        if d_model % num_heads:
            raise ValueError(f"joint: d_model={d_model} is not divisible by num_heads={num_heads}")
        if depth < 1:
            raise ValueError(f"joint: depth must be at least 1, got {depth}")
        if activation not in ("gelu", "relu"):
            raise ValueError(f"joint: activation must be 'gelu' or 'relu', got {activation!r}")
        n = len(self.modalities)
        self.max_positions = max_positions
        self.separators = nn.Parameter(torch.randn(n, d_model) * 0.02)
        # position 0 is the separator; tokens take 1..max_positions
        self.positions = nn.Parameter(torch.randn(n, max_positions + 1, d_model) * 0.02)
        self.cls = nn.Parameter(torch.randn(1, 1, d_model) * 0.02)
        self.layers = nn.ModuleList(MaskedSelfAttentionLayer(d_model, num_heads, ff_mult, dropout, activation)
                                    for _ in range(depth))
        self.norm = nn.LayerNorm(d_model)
        self.out_dim = d_model

    def no_weight_decay(self) -> set[str]:
        return {"separators", "positions", "cls"}

    def forward(self, tokens: dict[str, Tensor], masks: dict[str, Tensor]) -> Tensor:
        xs, ms = self.checked_inputs(tokens, masks)
        b, device = xs[0].shape[0], xs[0].device
        always = torch.ones(b, 1, dtype=torch.bool, device=device)
        parts, real = [self.cls.expand(b, -1, -1)], [always]
        for i, (x, m) in enumerate(zip(xs, ms)):
            if x.shape[1] > self.max_positions:
                raise ValueError(f"joint: {self.modalities[i]} has {x.shape[1]} tokens, more than "
                                 f"max_positions={self.max_positions}; lower data.max_len or raise "
                                 "fusion.max_positions")
            sep = self.separators[i].expand(b, 1, -1)
            parts.append(torch.cat([sep, x], dim=1) + self.positions[i, : x.shape[1] + 1])
            real += [always, m]
        seq, seen = torch.cat(parts, dim=1), torch.cat(real, dim=1).unsqueeze(1)  # [B, L, d], [B, 1, L]
        for i, layer in enumerate(self.layers):
            last = i == len(self.layers) - 1
            seq = layer(seq, seen, queries=1 if last else None)
        return self.norm(seq[:, 0])
