"""deepops.nn.convert on a small AlexNet-like network: every convertible layer becomes its deepops twin, parameters
are shared (not copied), state_dict keys are unchanged, and outputs and gradients equal those of the original."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode

import deepops
import deepops.nn as dnn


def alexnet_like() -> nn.Module:
    torch.manual_seed(0)
    features = nn.Sequential(
        nn.Conv2d(3, 16, 5, stride=2, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(16, 32, 3, padding=1, groups=2), nn.LeakyReLU(0.1), nn.MaxPool2d(3, 2, ceil_mode=True),
        nn.Conv2d(32, 32, 3, padding="same", bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        nn.ConvTranspose2d(32, 8, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
    )
    head = nn.Sequential(nn.Flatten(), nn.Dropout(0.0), nn.LazyLinear(10))
    model = nn.Sequential(features, head).double()
    model(torch.randn(2, 3, 40, 40, dtype=torch.float64))  # materialise the lazy layer
    return model.eval()


class CountOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(func._schema.name)
        return func(*args, **(kwargs or {}))


CONVERTIBLE = (nn.Conv2d, nn.ConvTranspose2d, nn.MaxPool2d, nn.ReLU, nn.LeakyReLU)


def test_convert_copy_shares_parameters_and_matches():
    model = alexnet_like()
    converted = dnn.convert(model)
    assert converted is not model
    originals = [m for m in model.modules() if isinstance(m, CONVERTIBLE)]
    assert all(type(m).__module__.startswith("torch.nn") for m in originals), "the original must stay untouched"
    twins = [m for m in converted.modules() if isinstance(m, CONVERTIBLE)]
    assert len(twins) == len(originals) == 10
    assert all(type(m).__module__.startswith("deepops.nn") for m in twins)
    # same keys, and the very same tensors
    assert list(converted.state_dict()) == list(model.state_dict())
    for (k1, p1), (k2, p2) in zip(model.named_parameters(), converted.named_parameters()):
        assert k1 == k2 and p1 is p2
    for b1, b2 in zip(model.buffers(), converted.buffers()):
        assert b1 is b2
    x = torch.randn(2, 3, 40, 40, dtype=torch.float64)
    with CountOps() as seen:
        y = converted(x)
    for op in ("deepops::conv2d", "deepops::conv_transpose2d", "deepops::relu", "deepops::leaky_relu"):
        assert op in seen.names or op + "_" in seen.names, op
    assert any(n.startswith("deepops::max_pool2d") for n in seen.names)
    assert not any(n.startswith(("aten::convolution", "aten::max_pool2d", "aten::relu")) for n in seen.names)
    torch.testing.assert_close(y, model(x), rtol=1e-10, atol=1e-10)


def test_convert_gradients_and_training_step_agree():
    model = alexnet_like().train()
    converted = dnn.convert(model)
    x = torch.randn(3, 3, 40, 40, dtype=torch.float64)
    g_ref = torch.autograd.grad(model(x).square().sum(), list(model.parameters()))
    g_ours = torch.autograd.grad(converted(x).square().sum(), list(converted.parameters()))
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_convert_inplace_and_single_layers():
    model = alexnet_like()
    assert dnn.convert(model, inplace=True) is model
    assert isinstance(model[0][0], dnn.Conv2d) and isinstance(model[0][2], dnn.MaxPool2d)
    layer = nn.Conv2d(2, 3, 3)
    twin = dnn.convert(layer)
    assert isinstance(twin, dnn.Conv2d) and twin.weight is layer.weight and type(layer) is nn.Conv2d
    x = torch.randn(1, 2, 8, 8)
    torch.testing.assert_close(twin(x), layer(x))
    # a module that appears twice stays one module
    relu = nn.ReLU()
    shared = nn.Sequential(relu, nn.Conv2d(1, 1, 1), relu)
    out = dnn.convert(shared)
    assert out[0] is out[2] and isinstance(out[0], dnn.ReLU)
    with pytest.raises(TypeError, match="'model'"):
        dnn.convert("not a module")


def test_convert_to_torch_is_the_other_direction():
    """convert(model, to="torch") makes the PyTorch twin of a deepops model: the same parameter names, shapes and
    values (the same tensors), only torch.nn layers, equal outputs; converting back gives deepops layers again."""
    ours = dnn.convert(alexnet_like())
    twin = dnn.convert(ours, to="torch")
    assert all(type(m).__module__.startswith("torch.nn") for m in twin.modules())
    assert all(type(m).__module__.startswith("deepops.nn") for m in ours.modules() if isinstance(m, CONVERTIBLE))
    assert [(k, v.shape) for k, v in twin.state_dict().items()] == [(k, v.shape) for k, v in ours.state_dict().items()]
    for p1, p2 in zip(ours.parameters(), twin.parameters()):
        assert p1 is p2
    x = torch.randn(2, 3, 40, 40, dtype=torch.float64)
    with CountOps() as seen:
        y = twin(x)
    assert not any(n.startswith("deepops::") for n in seen.names)
    torch.testing.assert_close(y, ours(x), rtol=1e-10, atol=1e-10)
    back = dnn.convert(twin, inplace=True)
    assert back is twin and isinstance(back[0][0], dnn.Conv2d)
    # a model built from deepops layers only (the classifier), and an independent twin with the same weights
    from deepops import models as M
    import copy

    torch.manual_seed(0)
    lenet = M.build("lenet", 1, 10, 16)
    ref = dnn.convert(copy.deepcopy(lenet), to="torch")
    assert not any(type(m).__module__.startswith("deepops.nn") for m in ref.modules())
    for (k1, p1), (k2, p2) in zip(lenet.named_parameters(), ref.named_parameters()):
        assert k1 == k2 and p1 is not p2 and torch.equal(p1, p2)
    with pytest.raises(ValueError, match="'to'"):
        dnn.convert(lenet, to="jax")
