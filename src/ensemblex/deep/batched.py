"""K independent MLPs held as batched parameters and run as one computation.

Shapes: ``K`` members, batch ``B``, features ``d``. The first layer reads an input shared by
all members, ``(B, d)``, with a single matrix product against the members' weights laid side
by side; later layers read ``(K, B, h)`` and use one batched matrix product (``baddbmm``).
Every member has its own initialisation (as ``torch.nn.Linear``'s default, drawn per member).

Inference (no autograd) takes a separate, tiled path, :meth:`BatchedMLP.infer`: it walks over
tiles of members x rows so that a tile's activations stay in cache, and can
average the members' softmax inside each tile so ``(K, B, d_out)`` is never materialised.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from itertools import pairwise
from typing import Literal

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
        """Input: ``(B, d_in)`` or ``(K, B, d_in)``. Output: ``(K, B, d_out)``.

        Without autograd (``torch.no_grad`` / ``torch.inference_mode``) and without active
        dropout this runs :meth:`infer`, which gives the same numbers up to float rounding.
        """
        if not torch.is_grad_enabled() and not (self.training and self._has_dropout):
            return self.infer(x)
        return self._layers_forward(x)

    def _layers_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Layer by layer, weights as stored (the training path)."""
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = self.dropout(torch.relu(x))
        return x

    @property
    def _has_dropout(self) -> bool:
        return not isinstance(self.dropout, nn.Identity)

    # ------------------------------------------------------------ inference
    # Elements of one layer's activations in a tile (2**19 float32 = 2 MiB, the L2 of the two
    # cores here, each thread working on its half): small enough that a tile's activations
    # are still in cache when the next layer reads them, large enough that each product in a
    # tile is a sizeable GEMM (2**18 and 2**20 measured 5-20% slower for 1,000 2x32 members).
    TILE_ELEMENTS = 2**19
    # Rows per tile: enough for each GEMM to run near peak (a BLAS micro-kernel blocks far fewer
    # rows), few enough that many small members share a tile and its first-layer GEMM.
    TILE_ROWS = 512
    # Up to this many rows every product is a matrix-vector product bound by reading the
    # weights: the layout as stored streams them contiguously, in one batched product per
    # layer (batched GEMV in the transposed tile layout measured 3.7x slower at one row).
    FEW_ROWS = 8

    def _tiles(self, k: int, b: int) -> tuple[int, int, bool]:
        """Members and rows per tile for ``k`` members and ``b`` rows, and whether members go
        one at a time over all rows.

        Up to ``TILE_ROWS`` rows, then as many members as keep one layer's activations within
        ``TILE_ELEMENTS``. Wide members (fewer than 4 fit a full tile of rows) go one at a
        time over all rows once there are at least ``TILE_ROWS`` rows: their products are
        compute-bound whatever the tile, and fewer, larger products cost less dispatch.
        """
        width = max(layer.weight.shape[2] for layer in self.layers)
        if 4 * self.TILE_ROWS * width > self.TILE_ELEMENTS and b >= self.TILE_ROWS:
            return 1, b, True
        rows = max(1, min(b, self.TILE_ROWS))
        members = max(1, min(k, self.TILE_ELEMENTS // (rows * width)))
        return members, rows, False

    def _cached(self, name: str, build: Callable[[], list[torch.Tensor]]) -> list[torch.Tensor]:
        """``build()``'s tensors (copies of the parameters in another layout), kept (not in
        the state dict) until the parameters change in place or move."""
        params = [t for layer in self.layers for t in (layer.weight, layer.bias)]
        key = tuple((t._version, t.data_ptr(), t.device, t.dtype) for t in params)
        cache = self.__dict__.setdefault("_inference_cache", {})
        if name not in cache or cache[name][0] != key:
            with torch.no_grad():
                cache[name] = (key, build())
        return cache[name][1]

    def _inference_weights(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Every layer's weights as ``(K, d_out, d_in)`` and biases as ``(K, d_out, 1)``.

        In this layout a tile's activations are ``(k, h, rows)``: the first layer's output
        for a tile of members is one GEMM of their stacked weights ``(k * h1, d_in)`` with the
        shared input's transpose, already in place for the next layer's ``baddbmm`` (no copy),
        and every later product reads its operands contiguously.
        """
        layers = self.layers
        weights = self._cached("transposed", lambda: [t.weight.mT.contiguous() for t in layers])
        biases = self._cached("transposed biases", lambda: [t.bias.mT.contiguous() for t in layers])
        return weights, biases

    def _side_by_side_first_layer(self) -> list[torch.Tensor]:
        """The first layer's weights ``(d_in, K * h1)`` (members side by side) and biases
        ``(K * h1,)``, as the shared-input GEMM reads them."""
        first = self.layers[0]
        return self._cached(
            "side by side",
            lambda: [
                first.weight.permute(1, 0, 2).reshape(first.weight.shape[1], -1).contiguous(),
                first.bias.reshape(-1).contiguous(),
            ],
        )

    def _few_rows_forward(self, x: torch.Tensor) -> torch.Tensor:
        """All members over a few rows in the layout as stored; output ``(K, b, d_out)``.

        As the training path, but the first layer's weights side by side, ``(d_in, K * h1)``,
        are cached: building them on every call copied as many bytes as the call must read.
        """
        first, *rest = self.layers
        if x.dim() == 2:
            wide, bias = self._side_by_side_first_layer()
            h = torch.addmm(bias, x, wide).view(x.shape[0], self.k, -1).transpose(0, 1)
        else:
            h = torch.baddbmm(first.bias, x, first.weight)
        for layer in rest:
            h = torch.baddbmm(layer.bias, h.relu_(), layer.weight)
        return h

    def _wide_member_forward(self, x: torch.Tensor, j: int) -> torch.Tensor:
        """Member ``j`` alone over all rows. Input ``(B, d_in)`` or ``(K, B, d_in)``;
        output ``(1, B, d_out)``: large products, compute-bound, as stored."""
        h = x if x.dim() == 2 else x[j]
        for i, layer in enumerate(self.layers):
            h = torch.addmm(layer.bias[j, 0], h, layer.weight[j])
            if i < len(self.layers) - 1:
                h = h.relu_()
        return h.unsqueeze(0)

    def _tile_forward(self, x: torch.Tensor, members: slice, rows: slice) -> torch.Tensor:
        """One tile of small members. Input ``(B, d_in)`` shared or ``(K, B, d_in)``;
        output ``(k, d_out, rows)`` (members, outputs, rows: see :meth:`_inference_weights`)."""
        weights, biases = self._inference_weights()
        k_tile = members.stop - members.start
        if x.dim() == 2:  # shared input: one GEMM for the tile's members side by side
            w, b = weights[0][members], biases[0][members]
            h1, d_in = w.shape[1], w.shape[2]
            h = torch.addmm(b.reshape(-1, 1), w.reshape(-1, d_in), x[rows].T)
            h = h.view(k_tile, h1, -1)
        else:
            h = torch.baddbmm(biases[0][members], weights[0][members], x[members, rows].mT)
        for w, b in zip(weights[1:], biases[1:]):
            h = torch.baddbmm(b[members], w[members], h.relu_())
        return h

    @torch.no_grad()
    def infer(
        self, x: torch.Tensor, reduce: Literal["none", "mean", "softmax_mean"] = "none"
    ) -> torch.Tensor:
        """Forward pass without autograd, tiled over members and rows (dropout off).

        Input: ``(B, d_in)`` shared, or ``(K, B, d_in)``.
        Output: ``(K, B, d_out)`` for ``reduce="none"``; ``(B, d_out)`` for ``"mean"`` (mean of
        the members' outputs) and ``"softmax_mean"`` (mean of the members' softmax, what soft
        voting returns), reduced tile by tile without materialising ``(K, B, d_out)``.
        """
        if reduce not in ("none", "mean", "softmax_mean"):
            raise ValueError(f"reduce must be 'none', 'mean' or 'softmax_mean', however: {reduce}")
        k = self.k
        b = x.shape[-2]
        d_out = self.layers[-1].weight.shape[2]
        if b <= self.FEW_ROWS:
            h = self._few_rows_forward(x)  # (K, b, d_out)
            if reduce == "none":
                return h
            return (torch.softmax(h, dim=-1) if reduce == "softmax_mean" else h).mean(dim=0)
        k_tile, b_tile, wide = self._tiles(k, b)
        if reduce == "none":
            out = torch.empty(k, b, d_out, dtype=x.dtype, device=x.device)
        else:  # accumulated as (d_out, B), the tiles' own layout: no transposed copies
            out = torch.zeros(d_out, b, dtype=x.dtype, device=x.device)
        # members outer: a tile's weights stay in cache while the row tiles stream past them
        for m0 in range(0, k, k_tile):
            members = slice(m0, min(m0 + k_tile, k))
            for r0 in range(0, b, b_tile):
                rows = slice(r0, min(r0 + b_tile, b))
                if wide:
                    h = self._wide_member_forward(x, m0).transpose(1, 2)  # (1, d_out, b)
                else:
                    h = self._tile_forward(x, members, rows)  # (k, d_out, rows)
                if reduce == "none":
                    out[members, rows] = h.transpose(1, 2)
                else:
                    if reduce == "softmax_mean":
                        h = torch.softmax(h, dim=1)
                    out[:, rows] += h.sum(dim=0)
        if reduce == "none":
            return out
        return out.T.div_(k)
