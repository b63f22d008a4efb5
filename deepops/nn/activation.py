"""``deepops.nn.ReLU`` and ``deepops.nn.LeakyReLU``: subclasses of the ``torch.nn`` layers that call deepops."""

from __future__ import annotations

import torch

from ..ops.activation import leaky_relu, relu


class ReLU(torch.nn.ReLU):
    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return relu(input, inplace=self.inplace)


class LeakyReLU(torch.nn.LeakyReLU):
    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return leaky_relu(input, self.negative_slope, inplace=self.inplace)
