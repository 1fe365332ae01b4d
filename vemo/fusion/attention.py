"""Attention building blocks the transformer heads share: one fused QKV projection and
``scaled_dot_product_attention`` over a boolean mask, so a layer is a handful of large matmuls
instead of one attention module per modality or pair."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vemo.fusion.dropout import Dropout, keep_mask


def masked_attention(q: Tensor, k: Tensor, v: Tensor, allowed: Tensor, dropout_p: float) -> Tensor:
    """``scaled_dot_product_attention`` over a boolean mask (True = may attend), dropout ``dropout_p``
    on the attention weights. Every query must be allowed at least one key.

    On the CPU with dropout, the weights are computed here and dropped with the heads' cheaper
    mask: torch's own path there draws each weight's Bernoulli number alone and checks every row
    for being fully masked, together a twentieth of a crossattn training step.
    """
    if dropout_p == 0.0 or q.device.type != "cpu":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=dropout_p)
    scores = torch.matmul(q, k.transpose(-2, -1)).mul_(1.0 / math.sqrt(q.shape[-1]))
    weights = torch.softmax(scores.masked_fill_(~allowed, float("-inf")), dim=-1)
    return torch.matmul(weights * keep_mask(weights.shape, dropout_p, weights.dtype, weights.device), v)


class MaskedSelfAttentionLayer(nn.Module):
    """Pre-norm multi-head attention then a feed-forward layer, over one token sequence.

    ``forward(x, allowed, queries=None)``: ``x`` [B, L, d]; ``allowed`` [B, Lq, Lk] (or broadcastable)
    says which keys each query may see; ``queries`` optionally picks the first ``queries`` tokens as
    the only queries (a CLS-only last layer costs one row, not L).
    Every query must be allowed at least one key.
    """

    def __init__(self, d_model: int, num_heads: int, ff_mult: int, dropout: float, activation: str = "gelu"):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.norm = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.norm_ff = nn.LayerNorm(d_model)
        act = nn.GELU() if activation == "gelu" else nn.ReLU()
        self.ff = nn.Sequential(nn.Linear(d_model, ff_mult * d_model), act, Dropout(dropout),
                                nn.Linear(ff_mult * d_model, d_model), Dropout(dropout))
        self.dropout = Dropout(dropout)
        self.attn_dropout = dropout

    def _heads(self, t: Tensor) -> Tensor:
        b, n, d = t.shape
        return t.view(b, n, self.num_heads, d // self.num_heads).transpose(1, 2)

    def forward(self, x: Tensor, allowed: Tensor, queries: int | None = None) -> Tensor:
        h = self.norm(x)
        q_in = h[:, :queries] if queries is not None else h
        d = x.shape[-1]
        w, bias = self.qkv.weight, self.qkv.bias
        q = F.linear(q_in, w[:d], bias[:d])
        k, v = F.linear(h, w[d:], bias[d:]).chunk(2, dim=-1)
        attended = masked_attention(self._heads(q), self._heads(k), self._heads(v), allowed.unsqueeze(1),
                                    self.attn_dropout if self.training else 0.0)
        attended = attended.transpose(1, 2).reshape(q.shape)
        base = x[:, :queries] if queries is not None else x
        y = base + self.dropout(self.out(attended))
        return y + self.ff(self.norm_ff(y))


def sinusoidal_positions(length: int, dim: int, device: torch.device) -> Tensor:
    pos = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(1e4) / dim))
    table = torch.zeros(length, dim, device=device)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return table
