"""``deepops.nn.Conv2d`` and ``deepops.nn.ConvTranspose2d``: subclasses of the ``torch.nn`` layers that call deepops.

They inherit everything but the computation: the constructor and its arguments, the parameters and their
initialisation, ``state_dict`` keys, ``extra_repr``.  As in PyTorch, a ``padding_mode`` other than ``'zeros'``
('reflect', 'replicate', 'circular') is an ``F.pad`` of the input followed by an unpadded convolution, and
``ConvTranspose2d.forward(input, output_size)`` picks the ``output_padding`` that gives ``output_size``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..ops.conv import conv2d, conv_transpose2d


class Conv2d(torch.nn.Conv2d):
    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if self.padding_mode != "zeros":
            padded = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return conv2d(padded, weight, bias, self.stride, 0, self.dilation, self.groups)
        return conv2d(input, weight, bias, self.stride, self.padding, self.dilation, self.groups)


class ConvTranspose2d(torch.nn.ConvTranspose2d):
    def forward(self, input: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if self.padding_mode != "zeros":
            raise ValueError("Only `zeros` padding mode is supported for ConvTranspose2d")
        output_padding = self._output_padding(
            input, output_size, self.stride, self.padding, self.kernel_size, 2, self.dilation
        )
        return conv_transpose2d(
            input, self.weight, self.bias, self.stride, self.padding, output_padding, self.groups, self.dilation
        )
