"""ReLU and leaky ReLU: the pattern every deepops op follows.

Ops (schemas in the ``deepops`` namespace):

========================================================================  =========================================
``relu(Tensor self) -> Tensor``                                           forward
``relu_(Tensor(a!) self) -> ()``                                          in-place forward
``relu_backward(Tensor grad, Tensor result) -> Tensor``                   ``grad`` where ``result > 0``, else 0
``leaky_relu(Tensor self, float negative_slope) -> Tensor``               forward
``leaky_relu_(Tensor(a!) self, float negative_slope) -> ()``              in-place forward
``leaky_relu_backward(Tensor grad, Tensor self, float negative_slope)``   ``grad`` or ``grad * negative_slope``
========================================================================  =========================================

The backward ops have autograd formulas of their own, so double backward (``gradgradcheck``) works too.

Every op module reads the same way: checks and fakes, the schemas (``define``: schema, check, CPU kernel from
``deepops.cpu``, fake), the autograd formulas, then the public functions.
"""

from __future__ import annotations

import torch

from .. import cpu
from .._library import define
from .._rules import check_float, check_same

# ------------------------------------------------------------------------------------------------- checks, fakes


def _check_relu(self):
    check_float(self, "input", "relu")


def _check_leaky(self, negative_slope):
    check_float(self, "input", "leaky_relu")


def _check_relu_backward(grad, result):
    check_float(grad, "grad", "relu_backward")
    check_same(grad, result, ("grad", "result"), "relu_backward")


def _check_leaky_backward(grad, self, negative_slope):
    check_float(grad, "grad", "leaky_relu_backward")
    check_same(grad, self, ("grad", "self"), "leaky_relu_backward")


def _like_first(t, *args):
    return torch.empty_like(t)


def _backward_fake(grad, other, *args):
    return torch.empty_like(other)


def _nothing(*args):
    return None


define("relu(Tensor self) -> Tensor", _check_relu, cpu.activation.relu, _like_first)
define("relu_(Tensor(a!) self) -> ()", _check_relu, cpu.activation.relu_, _nothing)
define(
    "relu_backward(Tensor grad, Tensor result) -> Tensor", _check_relu_backward, cpu.activation.relu_backward,
    _backward_fake,
)
define("leaky_relu(Tensor self, float negative_slope) -> Tensor", _check_leaky, cpu.activation.leaky_relu, _like_first)
define(
    "leaky_relu_(Tensor(a!) self, float negative_slope) -> ()", _check_leaky, cpu.activation.leaky_relu_, _nothing
)
define(
    "leaky_relu_backward(Tensor grad, Tensor self, float negative_slope) -> Tensor", _check_leaky_backward,
    cpu.activation.leaky_relu_backward, _backward_fake,
)

# ------------------------------------------------------------------------------------------------------- autograd
ops = torch.ops.deepops


def _relu_setup(ctx, inputs, output):
    ctx.save_for_backward(output)


def _relu_bwd(ctx, grad):
    (result,) = ctx.saved_tensors
    return ops.relu_backward(grad, result)


def _relu_backward_setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[1])


def _relu_backward_bwd(ctx, gg):
    # relu_backward is linear in grad; its derivative with respect to the result is zero almost everywhere
    (result,) = ctx.saved_tensors
    return ops.relu_backward(gg, result), None


def _leaky_setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[0])
    ctx.slope = inputs[1]


def _leaky_bwd(ctx, grad):
    (x,) = ctx.saved_tensors
    return ops.leaky_relu_backward(grad, x, ctx.slope), None


def _leaky_backward_setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[1])
    ctx.slope = inputs[2]


def _leaky_backward_bwd(ctx, gg):
    (x,) = ctx.saved_tensors
    return ops.leaky_relu_backward(gg, x, ctx.slope), None, None


torch.library.register_autograd("deepops::relu", _relu_bwd, setup_context=_relu_setup)
torch.library.register_autograd("deepops::relu_backward", _relu_backward_bwd, setup_context=_relu_backward_setup)
torch.library.register_autograd("deepops::leaky_relu", _leaky_bwd, setup_context=_leaky_setup)
torch.library.register_autograd(
    "deepops::leaky_relu_backward", _leaky_backward_bwd, setup_context=_leaky_backward_setup
)

# ------------------------------------------------------------------------------------------------------ public API


def _inplace(op_inplace, op, input, *args, saves_input=False):
    """In-place application that stays correct under autograd.

    Without autograd the kernel writes into ``input`` directly.  When ``input`` takes part in autograd the result is
    computed out of place and copied back with ``copy_``, which records the in-place update as PyTorch itself does
    (and, like ``torch.relu_``, refuses a leaf that requires grad).  An op whose backward needs its input
    (``saves_input``) gets a clone of it, since ``input`` itself is about to be overwritten.
    """
    if torch.is_grad_enabled() and input.requires_grad:
        return input.copy_(op(input.clone() if saves_input else input, *args))
    op_inplace(input, *args)
    return input


def relu(input: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """``torch.nn.functional.relu``: ``max(input, 0)``, NaN propagated. float16/bfloat16/float32/float64."""
    check_float(input, "input", "relu")  # before the in-place path reads input.requires_grad
    if inplace:
        return _inplace(ops.relu_, ops.relu, input)
    return ops.relu(input)


def leaky_relu(input: torch.Tensor, negative_slope: float = 0.01, inplace: bool = False) -> torch.Tensor:
    """``torch.nn.functional.leaky_relu``: ``input`` where positive, else ``input * negative_slope``."""
    check_float(input, "input", "leaky_relu")
    negative_slope = float(negative_slope)
    if inplace:
        return _inplace(ops.leaky_relu_, ops.leaky_relu, input, negative_slope, saves_input=True)
    return ops.leaky_relu(input, negative_slope)

