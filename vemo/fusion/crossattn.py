"""crossattn: a cross-modal transformer.

Tokens get a modality-type embedding and a positional embedding (so order is visible). In each
layer every modality's tokens attend to the tokens of all other modalities (plus one learned
"null" token, so a video lacking every other modality still has something to attend to). A CLS
token then pools everything with attention. Padded and missing tokens are excluded from every
attention through masks.

A layer is one masked attention over the concatenated sequence of all modalities: each
modality keeps its own weights (norms, query/key/value and output projections, feed-forward), but
every token is projected once per layer, by its own modality's weights, instead of once per
modality that reads it; the last pooling layer computes only the CLS row.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from vemo.fusion.attention import MaskedSelfAttentionLayer, masked_attention, sinusoidal_positions
from vemo.fusion.base import FusionHead
from vemo.fusion.dropout import Dropout

__all__ = ["CrossAttentionFusion"]


class ModalityAttentionLayer(nn.Module):
    """Pre-norm masked attention + feed-forward over the concatenated modalities, with each
    modality's own weights applied to its own tokens, and a learned null key/value always visible."""

    def __init__(self, n: int, d_model: int, num_heads: int, ff_mult: int, dropout: float):
        super().__init__()
        self.num_heads = num_heads
        self.norm = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(n))
        self.qkv = nn.ModuleList(nn.Linear(d_model, 3 * d_model) for _ in range(n))
        self.out = nn.ModuleList(nn.Linear(d_model, d_model) for _ in range(n))
        self.norm_ff = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(n))
        self.ff = nn.ModuleList(nn.Sequential(nn.Linear(d_model, ff_mult * d_model), nn.GELU(), Dropout(dropout),
                                              nn.Linear(ff_mult * d_model, d_model), Dropout(dropout))
                                for _ in range(n))
        self.null_kv = nn.Parameter(torch.randn(2, d_model) * 0.02)
        self.dropout = Dropout(dropout)
        self.attn_dropout = dropout

    def forward(self, xs: list[Tensor], allowed: Tensor) -> list[Tensor]:
        b, d, h = xs[0].shape[0], xs[0].shape[-1], self.num_heads
        q, k, v = torch.cat([self.qkv[i](self.norm[i](x)) for i, x in enumerate(xs)], dim=1).chunk(3, dim=-1)
        k = torch.cat([self.null_kv[0].expand(b, 1, d), k], dim=1)
        v = torch.cat([self.null_kv[1].expand(b, 1, d), v], dim=1)

        def heads(t: Tensor) -> Tensor:
            return t.view(b, t.shape[1], h, d // h).transpose(1, 2)

        attended = masked_attention(heads(q), heads(k), heads(v), allowed.unsqueeze(1),
                                    self.attn_dropout if self.training else 0.0)
        attended = attended.transpose(1, 2).reshape(b, -1, d).split([x.shape[1] for x in xs], dim=1)
        out = []
        for i, (x, a) in enumerate(zip(xs, attended)):
            y = x + self.dropout(self.out[i](a))
            out.append(y + self.ff[i](self.norm_ff[i](y)))
        return out


class CrossAttentionFusion(FusionHead):
    def __init__(self, modalities: Sequence[str], d_model: int, depth: int = 2, num_heads: int = 4,
                 ff_mult: int = 2, dropout: float = 0.1, pool_depth: int = 1,
                 positional: str = "sinusoidal", max_positions: int = 1024):
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
        self.type_embed = nn.Parameter(torch.randn(n, d_model) * 0.02)
        self.pos_embed = nn.Embedding(max_positions, d_model) if positional == "learned" else None
        self.cls = nn.Parameter(torch.randn(1, 1, d_model) * 0.02)
        self.cross_layers = nn.ModuleList(ModalityAttentionLayer(n, d_model, num_heads, ff_mult, dropout)
                                          for _ in range(depth))
        self.pool_layers = nn.ModuleList(MaskedSelfAttentionLayer(d_model, num_heads, ff_mult, dropout)
                                         for _ in range(pool_depth))
        self.norm = nn.LayerNorm(d_model)
        self.out_dim = d_model
        self._sinusoids: dict[tuple[int, str], Tensor] = {}

    def no_weight_decay(self) -> set[str]:
        return {"type_embed", "cls"} | ({"pos_embed.weight"} if self.pos_embed is not None else set())

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
        b, device = xs[0].shape[0], xs[0].device
        x, real = torch.cat(xs, dim=1), torch.cat(ms, dim=1)           # [B, L, d], [B, L]
        modality = torch.cat([torch.full((t.shape[1],), i, device=device) for i, t in enumerate(xs)])
        always = torch.ones(b, 1, dtype=torch.bool, device=device)
        # a token sees the null token and the real tokens of every other modality
        other = modality.unsqueeze(1) != modality.unsqueeze(0)          # [L, L]
        cross = torch.cat([always.unsqueeze(1).expand(b, len(modality), 1),
                           other.unsqueeze(0) & real.unsqueeze(1)], dim=2)  # [B, L, 1 + L]
        parts = list(x.split([t.shape[1] for t in xs], dim=1))
        for layer in self.cross_layers:
            parts = layer(parts, cross)
        x = torch.cat(parts, dim=1)
        seq = torch.cat([self.cls.expand(b, -1, -1), x], dim=1)
        seen = torch.cat([always, real], dim=1).unsqueeze(1)            # [B, 1, 1 + L]
        for i, layer in enumerate(self.pool_layers):
            last = i == len(self.pool_layers) - 1
            seq = layer(seq, seen, queries=1 if last else None)        # only CLS is read after the last
        return self.norm(seq[:, 0])
