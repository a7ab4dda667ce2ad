"""K independent MLPs held as batched parameters and run as one computation.

Shapes: ``K`` members, batch ``B``, features ``d``. The first layer reads an input shared by
all members, ``(B, d)``, with a single matrix product against the members' weights laid side
by side; later layers read ``(K, B, h)`` and use one batched matrix product (``baddbmm``).
Every member has its own initialisation (as ``torch.nn.Linear``'s default, drawn per member).
"""

from __future__ import annotations

import math
from itertools import pairwise

import torch
from torch import nn


class BatchedLinear(nn.Module):
    """K linear layers at once.

    Input: ``(B, d_in)`` (shared by all members) or ``(K, B, d_in)``.
    Output: ``(K, B, d_out)``.

    Examples
    --------
    >>> layer = BatchedLinear(4, 3, 2, generator=torch.Generator().manual_seed(0))
    >>> layer(torch.ones(5, 3)).shape
    torch.Size([4, 5, 2])
    """

    def __init__(self, k: int, d_in: int, d_out: int, generator: torch.Generator | None = None):
        super().__init__()
        if min(k, d_in, d_out) < 1:
            raise ValueError(f"k, d_in and d_out must be >= 1, however: {(k, d_in, d_out)}")
        bound = 1.0 / math.sqrt(d_in)  # nn.Linear's default, for each member separately
        self.weight = nn.Parameter(
            (torch.rand(k, d_in, d_out, generator=generator) * 2 - 1) * bound
        )
        self.bias = nn.Parameter((torch.rand(k, 1, d_out, generator=generator) * 2 - 1) * bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, d_in, d_out = self.weight.shape
        if x.dim() == 2:  # shared input: one GEMM with the members' weights side by side
            wide = self.weight.permute(1, 0, 2).reshape(d_in, k * d_out)
            return (x @ wide).view(x.shape[0], k, d_out).transpose(0, 1) + self.bias
        return torch.baddbmm(self.bias, x, self.weight)


class BatchedMLP(nn.Module):
    """K MLPs with ReLU hidden layers, evaluated together.

    Input: ``(B, d_in)`` shared, or ``(K, B, d_in)`` when each member sees its own batch.
    Output: ``(K, B, d_out)``.
    """

    def __init__(
        self,
        k: int,
        d_in: int,
        d_out: int,
        hidden: tuple[int, ...] = (256, 256),
        dropout: float = 0.0,
        seed: int = 0,
    ):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        sizes = [d_in, *hidden, d_out]
        self.layers = nn.ModuleList(BatchedLinear(k, a, b, generator) for a, b in pairwise(sizes))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = self.dropout(torch.relu(x))
        return x
