"""crossattn: a cross-modal transformer.

Tokens get a modality-type embedding and a positional embedding (so order is visible). In each
layer every modality's tokens attend to the tokens of all other modalities (plus one learned
"null" token, so a video lacking every other modality still has something to attend to). A CLS
token then pools everything with attention. Padded and missing tokens are excluded from every
attention through masks.

All modalities share each layer's weights (the type embedding tells them apart), so a layer is
one masked attention over the concatenated sequence: keys and values are projected once per
layer instead of once per receiving modality, and the last pooling layer computes only the CLS
row. ``shared_layers=false`` builds the earlier layout, one attention block per modality and
layer, which checkpoints written before this change need.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from vemo.fusion.attention import MaskedSelfAttentionLayer, sinusoidal_positions
from vemo.fusion.base import FUSION_HEADS, FusionHead

__all__ = ["CrossAttentionFusion"]


class AttentionBlock(nn.Module):
    """Pre-norm attention of queries over a context, then a feed-forward layer (per-modality layout)."""

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


@FUSION_HEADS.register("crossattn")
class CrossAttentionFusion(FusionHead):
    def __init__(self, modalities: Sequence[str], d_model: int, depth: int = 2, num_heads: int = 4,
                 ff_mult: int = 2, dropout: float = 0.1, pool_depth: int = 1,
                 positional: str = "sinusoidal", max_positions: int = 1024, shared_layers: bool = True):
        super().__init__(modalities, d_model)
        if d_model % num_heads:
            raise ValueError(f"crossattn: d_model={d_model} is not divisible by num_heads={num_heads}")
        if positional not in ("sinusoidal", "learned"):
            raise ValueError(f"crossattn: positional must be 'sinusoidal' or 'learned', got {positional!r}")
        if pool_depth < 1:
            raise ValueError(f"crossattn: pool_depth must be at least 1, got {pool_depth}")
        n = len(self.modalities)
        self.positional = positional
        self.max_positions = max_positions
        self.shared_layers = bool(shared_layers)
        self.type_embed = nn.Parameter(torch.randn(n, d_model) * 0.02)
        self.pos_embed = nn.Embedding(max_positions, d_model) if positional == "learned" else None
        self.null = nn.Parameter(torch.randn(1, 1, d_model) * 0.02)
        self.cls = nn.Parameter(torch.randn(1, 1, d_model) * 0.02)
        if self.shared_layers:
            def layer() -> nn.Module:
                return MaskedSelfAttentionLayer(d_model, num_heads, ff_mult, dropout)
            self.cross_layers = nn.ModuleList(layer() for _ in range(depth))
            self.pool_layers = nn.ModuleList(layer() for _ in range(pool_depth))
        else:
            self.cross_layers = nn.ModuleList(
                nn.ModuleList(AttentionBlock(d_model, num_heads, ff_mult, dropout) for _ in range(n))
                for _ in range(depth))
            self.pool_layers = nn.ModuleList(AttentionBlock(d_model, num_heads, ff_mult, dropout)
                                             for _ in range(pool_depth))
        self.norm = nn.LayerNorm(d_model)
        self.out_dim = d_model
        self._sinusoids: dict[tuple[int, str], Tensor] = {}

    def no_weight_decay(self) -> set[str]:
        learned_tokens = {"type_embed", "null", "cls"}
        return learned_tokens | ({"pos_embed.weight"} if self.pos_embed is not None else set())

    def _positions(self, length: int, device: torch.device) -> Tensor:
        if self.pos_embed is None:
            key = (length, str(device))
            if key not in self._sinusoids:  # a fixed table: computed once per length and device
                self._sinusoids[key] = sinusoidal_positions(length, self.d_model, device)
            return self._sinusoids[key]
        if length > self.max_positions:
            raise ValueError(f"crossattn: {length} tokens exceed max_positions={self.max_positions}; "
                             "lower data.max_len or raise fusion.max_positions")
        return self.pos_embed.weight[:length]

    def forward(self, tokens: dict[str, Tensor], masks: dict[str, Tensor]) -> Tensor:
        xs, ms = self.checked_inputs(tokens, masks)
        xs = [x + self.type_embed[i] + self._positions(x.shape[1], x.device) for i, x in enumerate(xs)]
        if not self.shared_layers:
            return self._forward_per_modality(xs, ms)
        b, device = xs[0].shape[0], xs[0].device
        x, real = torch.cat(xs, dim=1), torch.cat(ms, dim=1)           # [B, L, d], [B, L]
        modality = torch.cat([torch.full((t.shape[1],), i, device=device) for i, t in enumerate(xs)])
        always = torch.ones(b, 1, dtype=torch.bool, device=device)
        # a token sees the null token and the real tokens of every other modality
        other = modality.unsqueeze(1) != modality.unsqueeze(0)          # [L, L]
        cross = torch.cat([always.unsqueeze(1).expand(b, len(modality), 1),
                           other.unsqueeze(0) & real.unsqueeze(1)], dim=2)  # [B, L, 1 + L]
        null = self.null.expand(b, -1, -1)
        for layer in self.cross_layers:
            x = layer(x, cross, extra_kv=null)  # every modality updates from the same previous layer
        seq = torch.cat([self.cls.expand(b, -1, -1), x], dim=1)
        seen = torch.cat([always, real], dim=1).unsqueeze(1)            # [B, 1, 1 + L]
        for i, layer in enumerate(self.pool_layers):
            last = i == len(self.pool_layers) - 1
            seq = layer(seq, seen, queries=1 if last else None)        # only CLS is read after the last
        return self.norm(seq[:, 0])

    def _forward_per_modality(self, xs: list[Tensor], ms: list[Tensor]) -> Tensor:
        b = xs[0].shape[0]
        null = self.null.expand(b, -1, -1)
        always = torch.ones(b, 1, dtype=torch.bool, device=xs[0].device)
        for blocks in self.cross_layers:
            updated = []
            for i, block in enumerate(blocks):
                context = torch.cat([null] + [x for j, x in enumerate(xs) if j != i], dim=1)
                context_mask = torch.cat([always] + [m for j, m in enumerate(ms) if j != i], dim=1)
                updated.append(block(xs[i], context, context_mask))
            xs = updated
        seq = torch.cat([self.cls.expand(b, -1, -1)] + xs, dim=1)
        seq_mask = torch.cat([always] + ms, dim=1)
        for block in self.pool_layers:
            seq = block(seq, seq, seq_mask)
        return self.norm(seq[:, 0])
