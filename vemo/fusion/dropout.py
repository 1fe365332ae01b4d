"""Dropout with a cheaper mask on the CPU.

On the CPU, ``nn.Dropout`` draws one Mersenne-Twister number per element (``bernoulli_``), which
in vemo's small heads costs more than any layer but the matrix products (a seventh of a
crossattn training step). This module draws one 64-bit number per four elements instead and
keeps an element when its 16 bits reach a threshold, so the drop probability is ``p`` rounded to
1/65536 (0.1 -> 0.100006). Elements are dropped independently and survivors are scaled by
1 / (1 - p), as ``nn.Dropout`` does; the draws come from torch's global generator, so a seeded
run repeats. On other devices, in place, and for ``p`` of 0 or 1 it is ``nn.Dropout`` itself.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

LEVELS = 1 << 16   # one element's share of a draw: 16 bits
PER_DRAW = 4       # random_(-2**63, None) is uniform over all 64 bits: four 16-bit fields per draw


def keep_mask(shape: torch.Size, p: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """1 / (1 - p) where an element is kept, 0 where it is dropped (with probability ``p``)."""
    n = math.prod(shape)
    fields = torch.empty((n + PER_DRAW - 1) // PER_DRAW, dtype=torch.int64, device=device)
    fields.random_(-(1 << 63), None)
    threshold = round(p * LEVELS) - LEVELS // 2  # a field below it drops its element
    # contiguous fields, converted by arithmetic: a strided copy or a comparison to bool costs
    # more than the draws; float32 holds every 16-bit integer exactly (float16 would not)
    values = fields.view(torch.int16)[:n].view(shape).to(torch.float32)
    # field - threshold + 1 is >= 1 for a kept element and <= 0 for a dropped one: clamp to {0, 1}
    return values.add_(1 - threshold).clamp_(0, 1).mul_(1.0 / (1.0 - p)).to(dtype)


class Dropout(nn.Dropout):
    """``nn.Dropout`` (same options, no state) with the cheaper mask on the CPU."""

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.inplace or self.p in (0.0, 1.0) or x.device.type != "cpu":
            return super().forward(x)
        return x * keep_mask(x.shape, self.p, x.dtype, x.device)
