"""``deepops filter``: the classic 3x3 kernels through deepops.conv2d, checked against scipy.ndimage.correlate on
grey and colour, 8- and 16-bit images with every border rule; the output conversion; the command line."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from scipy import ndimage
from torch.utils._python_dispatch import TorchDispatchMode

from deepops import filters
from deepops.cli import main
from deepops.data.images import read_image, write_image
from conftest import stable_seed

SCIPY_MODE = {"reflect": "reflect", "mirror": "mirror", "nearest": "nearest", "zero": "constant"}


def _image(dtype, colour, seed=0, shape=(23, 31)):
    rng = np.random.default_rng(seed)
    hi = np.iinfo(dtype).max
    a = rng.integers(0, hi + 1, size=shape + ((3,) if colour else ()), dtype=np.int64)
    a[5:12, 7:20] = hi  # a bright block: real edges, and values at the top of the range
    return a.astype(dtype)


def _scipy(a, kernel, border):
    k = filters.KERNELS[kernel]
    f = a.astype(np.float64)
    if a.ndim == 2:
        return ndimage.correlate(f, k, mode=SCIPY_MODE[border], cval=0.0)
    return np.stack([ndimage.correlate(f[..., c], k, mode=SCIPY_MODE[border], cval=0.0) for c in range(a.shape[-1])], -1)


@pytest.mark.parametrize("kernel", sorted(filters.KERNELS))
@pytest.mark.parametrize("border", sorted(filters.BORDERS))
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("colour", [False, True])
def test_matches_scipy_correlate(kernel, border, dtype, colour):
    a = _image(dtype, colour, seed=stable_seed(kernel, border))
    ref = _scipy(a, kernel, border)
    got = filters.correlate(a, kernel, border)
    assert got.shape == a.shape
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-9 * np.iinfo(dtype).max)
    out = filters.apply(a, kernel, border)
    assert out.dtype == a.dtype and out.shape == a.shape
    hi = np.iinfo(dtype).max
    expect = np.clip(np.rint(np.abs(ref) if kernel in filters.SIGNED else ref), 0, hi).astype(dtype)
    np.testing.assert_array_equal(out, expect)


def test_filters_run_through_deepops_conv2d():
    class Count(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.c = Counter()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.c[func.namespace + "::" + func._opname] += 1
            return func(*args, **(kwargs or {}))

    with Count() as n:
        filters.apply(_image(np.uint8, True), "sobel-x", "zero")
    assert n.c["deepops::conv2d"] == 1 and not any("convolution" in k for k in n.c), n.c


def test_known_responses():
    """Hand-checked values: a vertical step edge, a constant image, a single bright pixel."""
    step = np.zeros((5, 6), np.float64)
    step[:, 3:] = 1.0
    sx = filters.correlate(step, "sobel-x", "nearest")
    np.testing.assert_allclose(sx[:, 2:4], 4.0)  # (1 + 2 + 1) across the edge
    np.testing.assert_allclose(sx[:, [0, 5]], 0.0)
    np.testing.assert_allclose(filters.correlate(step, "sobel-y", "nearest"), 0.0)
    flat = np.full((4, 4), 7.0)
    np.testing.assert_allclose(filters.correlate(flat, "blur", "reflect"), 7.0)
    np.testing.assert_allclose(filters.correlate(flat, "sharpen", "mirror"), 7.0)
    np.testing.assert_allclose(filters.correlate(flat, "laplace", "nearest"), 0.0)
    # zero border: a blur darkens the corners of a constant image to 4/9 of it
    np.testing.assert_allclose(filters.correlate(flat, "blur", "zero")[0, 0], 7.0 * 4 / 9)
    dot = np.zeros((5, 5))
    dot[2, 2] = 1
    np.testing.assert_allclose(filters.correlate(dot, "laplace", "zero")[1:4, 1:4], filters.KERNELS["laplace"][::-1, ::-1])


def test_output_conversions():
    r = np.array([[-300.0, -1.4, 0.5, 254.6, 700.0]])
    np.testing.assert_array_equal(filters.to_dtype(r, np.uint8, "clip"), [[0, 0, 0, 255, 255]])
    np.testing.assert_array_equal(filters.to_dtype(r, np.uint8, "abs"), [[255, 1, 0, 255, 255]])
    s = filters.to_dtype(r, np.uint16, "stretch")
    assert s.dtype == np.uint16 and s.min() == 0 and s.max() == 65535
    f = filters.to_dtype(r, np.float32, "clip")
    assert f.dtype == np.float32 and f.min() == -300  # floats are not clipped


def test_bad_arguments():
    a = np.zeros((4, 4), np.uint8)
    with pytest.raises(ValueError, match="'kernel'"):
        filters.correlate(a, "emboss")
    with pytest.raises(ValueError, match="'border'"):
        filters.correlate(a, "blur", "wrap")
    with pytest.raises(ValueError, match="'image'"):
        filters.correlate(np.zeros(4), "blur")
    with pytest.raises(ValueError, match="'output'"):
        filters.to_dtype(a.astype(float), np.uint8, "log")


def test_cli_default_image_offline(tmp_path, capsys):
    out = tmp_path / "edges.png"
    assert main(["filter", "--kernel", "sobel-x", "--out", str(out)]) == 0
    assert "sklearn:china.jpg" in capsys.readouterr().out
    img, _ = filters.default_image()
    got = read_image(out)
    assert got.shape == img.shape and got.dtype == np.uint8
    np.testing.assert_array_equal(got, filters.apply(img, "sobel-x"))


def test_cli_16bit_grey_png_and_colour_tiff(tmp_path, capsys):
    g16 = _image(np.uint16, False, seed=4)
    write_image(tmp_path / "g.png", g16)
    assert main(["filter", str(tmp_path / "g.png"), "--kernel", "blur", "--border", "mirror",
                 "--out", str(tmp_path / "gb.png")]) == 0
    got = read_image(tmp_path / "gb.png")
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, filters.apply(g16, "blur", "mirror"))
    c16 = _image(np.uint16, True, seed=5)
    write_image(tmp_path / "c.tif", c16)
    # 16-bit colour does not fit a PNG: the command writes a TIFF instead, and says so
    assert main(["filter", str(tmp_path / "c.tif"), "--kernel", "laplace", "--out", str(tmp_path / "cl.png")]) == 0
    assert "cl.tif" in capsys.readouterr().out
    np.testing.assert_array_equal(read_image(tmp_path / "cl.tif"), filters.apply(c16, "laplace"))
    assert main(["filter", str(tmp_path / "c.tif"), "--kernel", "sharpen", "--grey", "--out", str(tmp_path / "s.png")]) == 0
    assert read_image(tmp_path / "s.png").ndim == 2
