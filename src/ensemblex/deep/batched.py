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
    # Up to this many rows, wide members' products are matrix-vector products bound by reading
    # the weights: the layout as stored streams them contiguously, one batched product per
    # layer (the tile layout's batched GEMV measured 3x slower for 32 3x512 members at one
    # row). Small members keep the tiles, whose first-layer GEMM is faster even at one row.
    FEW_ROWS = 8

    @property
    def _wide(self) -> bool:
        """Whether fewer than 4 members fit a tile of ``TILE_ROWS`` rows."""
        width = max(layer.weight.shape[2] for layer in self.layers) + 1  # + the constant unit
        return 4 * self.TILE_ROWS * width > self.TILE_ELEMENTS

    def _tiles(self, k: int, b: int) -> tuple[int, int, bool]:
        """Members and rows per tile for ``k`` members and ``b`` rows, and whether members go
        one at a time over all rows.

        Up to ``TILE_ROWS`` rows, then as many members as keep one layer's activations within
        ``TILE_ELEMENTS``. Wide members go one at a time over all rows once there are at least
        ``TILE_ROWS`` rows: their products are compute-bound whatever the tile, and fewer,
        larger products cost less dispatch.
        """
        if self._wide and b >= self.TILE_ROWS:
            return 1, b, True
        width = max(layer.weight.shape[2] for layer in self.layers) + 1
        rows = max(1, min(b, self.TILE_ROWS))
        members = max(1, min(k, self.TILE_ELEMENTS // (rows * width)))
        return members, rows, False

    def _cached(self, name: str, build: Callable[[], list[torch.Tensor]]) -> list[torch.Tensor]:
        """``build()``'s tensors, kept (not in the state dict) until the parameters change in
        place or move."""
        params = [t for layer in self.layers for t in (layer.weight, layer.bias)]
        key = tuple((t._version, t.data_ptr(), t.device, t.dtype) for t in params)
        cache = self.__dict__.setdefault("_inference_cache", {})
        if name not in cache or cache[name][0] != key:
            with torch.no_grad():
                cache[name] = (key, build())
        return cache[name][1]

    def _inference_weights(self) -> list[torch.Tensor]:
        """Every layer's weights with its bias folded in, as ``(K, d_out + 1, d_in + 1)``
        (the last layer ``(K, d_out, d_in + 1)``).

        In this layout a tile's activations are ``(k, h + 1, rows)``: the first layer's output
        for a tile of members is one GEMM of their stacked weights ``(k * (h1 + 1), d_in + 1)``
        with the shared input's transpose, already in place for the next layer's ``bmm`` (no
        copy), and every later product reads its operands contiguously. Column ``d_in`` holds
        the bias and row ``d_out`` the weights of a unit that is always 1 (``[0, ..., 0, 1]``;
        ReLU keeps it), so the next layer's bias comes out of its product too: adding biases
        as a separate broadcast cost as much as the products of 1,000 2x32 members at 64
        rows.
        """

        def build() -> list[torch.Tensor]:
            weights = []
            for i, layer in enumerate(self.layers):
                k, d_in, d_out = layer.weight.shape
                last = i == len(self.layers) - 1
                w = layer.weight.new_zeros(k, d_out + (0 if last else 1), d_in + 1)
                w[:, :d_out, :d_in] = layer.weight.transpose(1, 2)
                w[:, :d_out, d_in] = layer.bias[:, 0]
                if not last:
                    w[:, d_out, d_in] = 1.0
                weights.append(w)
            return weights

        return self._cached("folded", build)

    def _few_rows_forward(self, x: torch.Tensor) -> torch.Tensor:
        """All members over a few rows in the layout as stored; output ``(K, b, d_out)``.
        The first layer's weights side by side, ``(d_in, K * h1)``, are cached: building them
        on every call copied as many bytes as the call must read."""
        first, *rest = self.layers
        if x.dim() == 2:
            wide, bias = self._cached(
                "side_by_side",
                lambda: [
                    first.weight.permute(1, 0, 2).reshape(first.weight.shape[1], -1).contiguous(),
                    first.bias.reshape(-1).contiguous(),
                ],
            )
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

    def _tile_forward(
        self, x_ones: torch.Tensor, members: slice, rows: slice, buffers: list[torch.Tensor]
    ) -> torch.Tensor:
        """One tile of small members, each layer's output written into ``buffers`` (one flat
        buffer per layer, reused by every tile: fresh multi-MiB tensors per tile cost page
        faults). Input: the input with a column of ones, transposed: ``(d_in + 1, B)`` shared
        or ``(K, d_in + 1, B)``. Output: ``(k, d_out, rows)`` (members, outputs, rows)."""
        weights = self._inference_weights()
        k_tile, n_rows = members.stop - members.start, rows.stop - rows.start

        def buffer(i: int, width: int) -> torch.Tensor:
            return buffers[i][: k_tile * width * n_rows].view(k_tile, width, n_rows)

        w = weights[0][members]
        h = buffer(0, w.shape[1])
        if x_ones.dim() == 2:  # shared input: one GEMM for the tile's members side by side
            torch.mm(w.reshape(-1, w.shape[2]), x_ones[:, rows], out=h.view(-1, n_rows))
        else:
            torch.bmm(w, x_ones[members, :, rows], out=h)
        for i, w in enumerate(weights[1:], start=1):
            h.relu_()  # the constant unit stays 1
            h = torch.bmm(w[members], h, out=buffer(i, w.shape[1]))
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
        if b <= self.FEW_ROWS and self._wide:
            h = self._few_rows_forward(x)  # (K, b, d_out)
            if reduce == "none":
                return h
            return (torch.softmax(h, dim=-1) if reduce == "softmax_mean" else h).mean(dim=0)
        k_tile, b_tile, wide = self._tiles(k, b)
        if reduce == "none":
            out = torch.empty(k, b, d_out, dtype=x.dtype, device=x.device)
        else:  # accumulated as (d_out, B), the tiles' own layout: no transposed copies
            out = torch.zeros(d_out, b, dtype=x.dtype, device=x.device)
        # member tiles of (nearly) equal size, at most k_tile: no small last tile
        n_tiles = -(-k // k_tile)
        bounds = [i * k // n_tiles for i in range(n_tiles + 1)]
        if not wide:
            x_ones = torch.ones(*x.shape[:-2], x.shape[-1] + 1, b, dtype=x.dtype, device=x.device)
            x_ones[..., :-1, :] = x.mT
            tile = -(-k // n_tiles) * min(b, b_tile)
            buffers = [x.new_empty(tile * w.shape[1]) for w in self._inference_weights()]
        # members outer: a tile's weights stay in cache while the row tiles stream past them
        for m0, m1 in pairwise(bounds):
            members = slice(m0, m1)
            for r0 in range(0, b, b_tile):
                rows = slice(r0, min(r0 + b_tile, b))
                if wide:
                    h = self._wide_member_forward(x, m0).transpose(1, 2)  # (1, d_out, b)
                else:
                    h = self._tile_forward(x_ones, members, rows, buffers)  # (k, d_out, rows)
                if reduce == "none":
                    out[members, rows] = h.transpose(1, 2)
                else:
                    if reduce == "softmax_mean":
                        h = torch.softmax(h, dim=1)
                    out[:, rows] += h.sum(dim=0)
        if reduce == "none":
            return out
        return out.T.div_(k)
