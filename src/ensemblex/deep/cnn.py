"""A small CNN for images, and K of them held as batched parameters and run as one computation.

Each member is ``conv3x3(C->c1) + ReLU + maxpool2 -> conv3x3(c1->c2) + ReLU + maxpool2 ->
linear(c2 * H/4 * W/4 -> n_classes)`` (``padding=1``, so only the pools shrink the image).

:class:`BatchedCNN` lays the K members' channels side by side and uses grouped convolutions
(``groups=K``): one convolution call per layer for the whole ensemble, fast on CPU and trained
with ordinary autograd (no ``vmap``). Shapes: ``K`` members, batch ``B``, image ``(C, H, W)``.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ensemblex.deep.batched import BatchedLinear


def _pair(image_size: int | tuple[int, int]) -> tuple[int, int]:
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    if min(h, w) < 4:
        raise ValueError(f"image_size must be at least 4x4 (two 2x2 poolings), however: {(h, w)}")
    return int(h), int(w)


class SmallCNN(nn.Module):
    """One member: two conv/ReLU/maxpool blocks and a linear head.

    Input: ``(B, C, H, W)``. Output: ``(B, n_classes)`` logits.

    Examples
    --------
    >>> SmallCNN(1, 8, 10)(torch.zeros(5, 1, 8, 8)).shape
    torch.Size([5, 10])
    """

    def __init__(
        self,
        in_channels: int,
        image_size: int | tuple[int, int],
        n_classes: int,
        channels: tuple[int, int] = (16, 32),
    ):
        super().__init__()
        h, w = _pair(image_size)
        c1, c2 = channels
        self.conv1 = nn.Conv2d(in_channels, c1, 3, padding=1)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.head = nn.Linear(c2 * (h // 4) * (w // 4), n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = F.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.head(x.flatten(1))


def _uniform(shape: tuple[int, ...], fan_in: int, generator: torch.Generator) -> torch.Tensor:
    # nn.Conv2d's default init (kaiming_uniform with a=sqrt(5) is U(-1/sqrt(fan_in), ..)),
    # drawn for every member separately
    bound = 1.0 / math.sqrt(fan_in)
    return (torch.rand(shape, generator=generator) * 2 - 1) * bound


class BatchedCNN(nn.Module):
    """K :class:`SmallCNN` members, evaluated together with grouped convolutions.

    Parameters
    ----------
    k : int
        Number of members.
    in_channels : int
    image_size : int or (int, int)
        ``H`` (square) or ``(H, W)``; at least 4x4.
    n_classes : int
        Outputs per member (1 for regression).
    seed : int, default 0
        Seeds every member's (distinct) initialisation.
    channels : (int, int), default (16, 32)
        Filters of the two convolutions, per member.
    dropout : float, default 0.0
        Dropout before the linear head (training only).

    Input: ``(B, C, H, W)`` shared by all members, or ``(K, B, C, H, W)`` when each member
    sees its own batch. Output: ``(K, B, n_classes)``.

    Examples
    --------
    >>> model = BatchedCNN(3, 1, 8, 10)
    >>> model(torch.zeros(5, 1, 8, 8)).shape
    torch.Size([3, 5, 10])
    """

    def __init__(
        self,
        k: int,
        in_channels: int,
        image_size: int | tuple[int, int],
        n_classes: int,
        seed: int = 0,
        channels: tuple[int, int] = (16, 32),
        dropout: float = 0.0,
    ):
        super().__init__()
        if min(k, in_channels, n_classes, *channels) < 1:
            raise ValueError(
                "k, in_channels, n_classes and channels must be >= 1, however: "
                f"{(k, in_channels, n_classes, tuple(channels))}"
            )
        h, w = _pair(image_size)
        c1, c2 = (int(c) for c in channels)
        generator = torch.Generator().manual_seed(seed)
        # stored per member, (K, out, in, 3, 3); viewed as (K*out, in, 3, 3) for groups=K
        self.conv1_weight = nn.Parameter(
            _uniform((k, c1, in_channels, 3, 3), in_channels * 9, generator)
        )
        self.conv1_bias = nn.Parameter(_uniform((k, c1), in_channels * 9, generator))
        self.conv2_weight = nn.Parameter(_uniform((k, c2, c1, 3, 3), c1 * 9, generator))
        self.conv2_bias = nn.Parameter(_uniform((k, c2), c1 * 9, generator))
        self.head = BatchedLinear(k, c2 * (h // 4) * (w // 4), n_classes, generator)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.k, self.in_channels, self.image_size = k, in_channels, (h, w)
        self.channels, self.n_classes = (c1, c2), n_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.k
        c, h, w = self.in_channels, *self.image_size
        w1 = self.conv1_weight.flatten(0, 1)
        b1 = self.conv1_bias.flatten()
        # activations are kept channels_last: oneDNN then runs the grouped convolutions'
        # backward pass several times faster on CPU than with the default layout
        if x.dim() == 4 and x.shape[1:] == (c, h, w):
            # shared input: every output channel reads all C input channels, so one ordinary
            # convolution with the members' filters stacked gives all members at once
            # (no need to repeat the input K times)
            batch = x.shape[0]
            x = F.conv2d(x.contiguous(memory_format=torch.channels_last), w1, b1, padding=1)
        elif x.dim() == 5 and x.shape[0] == k and x.shape[2:] == (c, h, w):
            # per-member input: members' channels side by side, one group per member
            batch = x.shape[1]
            x = x.transpose(0, 1).reshape(batch, k * c, h, w)
            x = x.contiguous(memory_format=torch.channels_last)
            x = F.conv2d(x, w1, b1, padding=1, groups=k)
        else:
            raise ValueError(
                f"x must have shape (B, {c}, {h}, {w}) or ({k}, B, {c}, {h}, {w}), "
                f"however: x.shape={tuple(x.shape)}"
            )
        x = F.max_pool2d(torch.relu(x), 2)
        x = F.conv2d(
            x,
            self.conv2_weight.flatten(0, 1),
            self.conv2_bias.flatten(),
            padding=1,
            groups=k,
        )
        x = F.max_pool2d(torch.relu(x), 2)  # (B, K*c2, H/4, W/4)
        # each member's (c2, H/4, W/4) block flattened in SmallCNN's order
        x = x.reshape(batch, k, -1).transpose(0, 1)  # (K, B, features)
        return self.head(self.dropout(x))

    def member(self, j: int) -> SmallCNN:
        """Member ``j`` as a standalone :class:`SmallCNN` holding a copy of its weights."""
        plain = SmallCNN(self.in_channels, self.image_size, self.n_classes, self.channels)
        with torch.no_grad():
            plain.conv1.weight.copy_(self.conv1_weight[j])
            plain.conv1.bias.copy_(self.conv1_bias[j])
            plain.conv2.weight.copy_(self.conv2_weight[j])
            plain.conv2.bias.copy_(self.conv2_bias[j])
            plain.head.weight.copy_(self.head.weight[j].T)
            plain.head.bias.copy_(self.head.bias[j, 0])
        return plain
