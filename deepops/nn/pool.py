"""``deepops.nn.MaxPool2d``: a subclass of ``torch.nn.MaxPool2d`` (same constructor, attributes, ``extra_repr`` and
``state_dict``) whose forward runs deepops' max pooling."""

from __future__ import annotations

import torch

from ..ops.pool import max_pool2d


class MaxPool2d(torch.nn.MaxPool2d):
    def forward(self, input: torch.Tensor):
        return max_pool2d(
            input,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            ceil_mode=self.ceil_mode,
            return_indices=self.return_indices,
        )
