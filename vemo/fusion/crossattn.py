"""crossattn: a cross-modal transformer.

Tokens get a modality-type embedding and a positional embedding (so order is visible). In each
layer every modality's tokens attend to the tokens of all other modalities (plus one learned
"null" token, so a video lacking every other modality still has something to attend to). A CLS
token then pools everything with self-attention. Padded and missing tokens are excluded from
every attention through key-padding masks.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from vemo.fusion.base import FUSION_HEADS, FusionHead


class AttentionBlock(nn.Module):
    """Pre-norm attention of queries over a context, then a feed-forward layer."""

    def __init__(self, d_model: int, num_heads: int, ff_mult: int, dropout: float):
        super().__init__()
        self.norm_q = nn.LayerNorm(d_model)
        self.norm_kv = nn.LayerNorm(d_model)
        self.attn = nn.MultiheadAttention(d_model, num_heads, dropout=dropout, batch_first=True)
        self.norm_ff = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, ff_mult * d_model), nn.GELU(), nn.Dropout(dropout),
                                nn.Linear(ff_mult * d_model, d_model), nn.Dropout(dropout))
        self.dropout = nn.Dropout(dropout)

    def forward(self, q: Tensor, context: Tensor, context_mask: Tensor) -> Tensor:
        kv = self.norm_kv(context)
        attended, _ = self.attn(self.norm_q(q), kv, kv, key_padding_mask=~context_mask, need_weights=False)
        q = q + self.dropout(attended)
        return q + self.ff(self.norm_ff(q))


def sinusoidal_positions(length: int, dim: int, device: torch.device) -> Tensor:
    pos = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(1e4) / dim))
    table = torch.zeros(length, dim, device=device)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return table


@FUSION_HEADS.register("crossattn")
class CrossAttentionFusion(FusionHead):
    def __init__(self, modalities: Sequence[str], d_model: int, depth: int = 2, num_heads: int = 4,
                 ff_mult: int = 2, dropout: float = 0.1, pool_depth: int = 1,
                 positional: str = "sinusoidal", max_positions: int = 1024):
        super().__init__(modalities, d_model)
        if d_model % num_heads:
            raise ValueError(f"crossattn: d_model={d_model} is not divisible by num_heads={num_heads}")
        if positional not in ("sinusoidal", "learned"):
            raise ValueError(f"crossattn: positional must be 'sinusoidal' or 'learned', got {positional!r}")
        n = len(self.modalities)
        self.positional = positional
        self.max_positions = max_positions
        self.type_embed = nn.Parameter(torch.randn(n, d_model) * 0.02)
        self.pos_embed = nn.Embedding(max_positions, d_model) if positional == "learned" else None
        self.null = nn.Parameter(torch.randn(1, 1, d_model) * 0.02)
        self.cls = nn.Parameter(torch.randn(1, 1, d_model) * 0.02)
        self.cross_layers = nn.ModuleList(
            nn.ModuleList(AttentionBlock(d_model, num_heads, ff_mult, dropout) for _ in range(n))
            for _ in range(depth))
        self.pool_layers = nn.ModuleList(AttentionBlock(d_model, num_heads, ff_mult, dropout)
                                         for _ in range(pool_depth))
        self.norm = nn.LayerNorm(d_model)
        self.out_dim = d_model

    def no_weight_decay(self) -> set[str]:
        learned_tokens = {"type_embed", "null", "cls"}
        return learned_tokens | ({"pos_embed.weight"} if self.pos_embed is not None else set())

    def _positions(self, length: int, device: torch.device) -> Tensor:
        if self.pos_embed is None:
            return sinusoidal_positions(length, self.d_model, device)
        if length > self.max_positions:
            raise ValueError(f"crossattn: {length} tokens exceed max_positions={self.max_positions}; "
                             "lower data.max_len or raise fusion.max_positions")
        return self.pos_embed.weight[:length]

    def forward(self, tokens: dict[str, Tensor], masks: dict[str, Tensor]) -> Tensor:
        xs, ms = self.checked_inputs(tokens, masks)
        b = xs[0].shape[0]
        xs = [x + self.type_embed[i] + self._positions(x.shape[1], x.device) for i, x in enumerate(xs)]
        null = self.null.expand(b, -1, -1)
        always = torch.ones(b, 1, dtype=torch.bool, device=xs[0].device)
        for blocks in self.cross_layers:
            updated = []
            for i, block in enumerate(blocks):
                context = torch.cat([null] + [x for j, x in enumerate(xs) if j != i], dim=1)
                context_mask = torch.cat([always] + [m for j, m in enumerate(ms) if j != i], dim=1)
                updated.append(block(xs[i], context, context_mask))
            xs = updated  # every modality updates from the same previous layer
        seq = torch.cat([self.cls.expand(b, -1, -1)] + xs, dim=1)
        seq_mask = torch.cat([always] + ms, dim=1)
        for block in self.pool_layers:
            seq = block(seq, seq, seq_mask)
        return self.norm(seq[:, 0])
