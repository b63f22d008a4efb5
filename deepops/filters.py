"""The lecture's classic 3x3 image filters, applied with ``deepops.conv2d`` (``deepops filter``).

Strategy: an image (H, W) or (H, W, C) in any dtype is converted to float64 (float32 on a GPU), padded by one pixel
with the chosen border rule, and every channel is filtered independently by moving the channels into the batch
dimension: one ``deepops.conv2d`` call of a (C, 1, H+2, W+2) batch with a single (1, 1, 3, 3) kernel.  Like every
CNN "convolution", ``conv2d`` is a cross-correlation (the kernel is not flipped), which is exactly what
``scipy.ndimage.correlate`` computes; the tests compare the two.

Border handling (``border``), named as in ``scipy.ndimage``, for an edge row ``a b c d``:

==========  ==============================  ===========================================================
``reflect`` ``b a | a b c d | d c``          the edge pixel is repeated as in a mirror (default; scipy's default)
``mirror``  ``c b | a b c d | c b``          mirrored about the edge pixel's centre
``nearest`` ``a a | a b c d | d d``          the edge pixel is extended
``zero``    ``0 0 | a b c d | 0 0``          zeros (conv2d's own ``padding=1``), darkens the border of a blur
==========  ==============================  ===========================================================

Output (``output``): the float response is turned back into the input's dtype by ``clip`` (round, clip to the
dtype's range: blur and sharpen), ``abs`` (magnitude, then clip: the default for the signed edge detectors
sobel-x, sobel-y and laplace) or ``stretch`` (map the response's min..max onto the dtype's full range).  8- and
16-bit images stay 8- and 16-bit; float images stay float (clip/abs do not clip them).
"""

from __future__ import annotations

import numpy as np
import torch

KERNELS: dict[str, np.ndarray] = {
    "blur": np.full((3, 3), 1.0 / 9.0),  # box (mean) filter
    "sharpen": np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], dtype=np.float64),
    "sobel-x": np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64),  # d/dx: vertical edges
    "sobel-y": np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], dtype=np.float64),  # d/dy: horizontal edges
    "laplace": np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=np.float64),
}
SIGNED = {"sobel-x", "sobel-y", "laplace"}
BORDERS = {"reflect": "symmetric", "mirror": "reflect", "nearest": "edge", "zero": None}  # -> numpy.pad mode
OUTPUTS = ("clip", "abs", "stretch")


def correlate(image: np.ndarray, kernel: str | np.ndarray, border: str = "reflect", device: str = "cpu") -> np.ndarray:
    """The float64 response of ``image`` (H, W) or (H, W, C) to a 3x3 (or any odd k x k) kernel, per channel."""
    import deepops

    k = KERNELS[kernel] if isinstance(kernel, str) and kernel in KERNELS else kernel
    if isinstance(k, str):
        raise ValueError(f"deepops.filter: 'kernel' must be one of {sorted(KERNELS)}, got {kernel!r}")
    k = np.asarray(k, dtype=np.float64)
    if k.ndim != 2 or k.shape[0] % 2 == 0 or k.shape[1] % 2 == 0:
        raise ValueError(f"deepops.filter: 'kernel' must be a 2-D array of odd sizes, got shape {k.shape}")
    if border not in BORDERS:
        raise ValueError(f"deepops.filter: 'border' must be one of {sorted(BORDERS)}, got {border!r}")
    a = np.asarray(image)
    if a.ndim not in (2, 3):
        raise ValueError(f"deepops.filter: 'image' must be (H, W) or (H, W, C), got shape {a.shape}")
    planes = a.astype(np.float64)
    planes = planes[None] if a.ndim == 2 else np.moveaxis(planes, -1, 0)  # (C, H, W)
    ph, pw = k.shape[0] // 2, k.shape[1] // 2
    if BORDERS[border] is not None:
        planes = np.pad(planes, ((0, 0), (ph, ph), (pw, pw)), mode=BORDERS[border])
        pad = 0
    else:
        pad = (ph, pw)  # zeros: conv2d pads itself
    dev = torch.device(device)
    dt = torch.float64 if dev.type == "cpu" else torch.float32
    x = torch.from_numpy(np.ascontiguousarray(planes)).to(device=dev, dtype=dt).unsqueeze(1)  # (C, 1, H', W')
    w = torch.from_numpy(k).to(device=dev, dtype=dt)[None, None]
    y = deepops.conv2d(x, w, padding=pad)[:, 0].double().cpu().numpy()
    return y[0] if a.ndim == 2 else np.moveaxis(y, 0, -1)


def to_dtype(response: np.ndarray, dtype: np.dtype, output: str) -> np.ndarray:
    """The response in the image's dtype, by ``clip``, ``abs`` or ``stretch`` (see the module notes)."""
    if output not in OUTPUTS:
        raise ValueError(f"deepops.filter: 'output' must be one of {OUTPUTS}, got {output!r}")
    dtype = np.dtype(dtype)
    r = np.abs(response) if output == "abs" else response
    if np.issubdtype(dtype, np.integer):
        lo, hi = np.iinfo(dtype).min, np.iinfo(dtype).max
        if output == "stretch":
            span = r.max() - r.min()
            r = (r - r.min()) / span * (hi - lo) + lo if span > 0 else np.full_like(r, lo)
        return np.clip(np.rint(r), lo, hi).astype(dtype)
    if output == "stretch":
        span = r.max() - r.min()
        r = (r - r.min()) / span if span > 0 else np.zeros_like(r)
    return r.astype(dtype if np.issubdtype(dtype, np.floating) else np.float64)


def apply(image: np.ndarray, kernel: str, border: str = "reflect", output: str | None = None, device: str = "cpu") -> np.ndarray:
    """Filter ``image`` and return it in its own dtype (``output`` defaults to ``abs`` for edge kernels, else clip)."""
    if output is None:
        output = "abs" if kernel in SIGNED else "clip"
    return to_dtype(correlate(image, kernel, border, device), np.asarray(image).dtype, output)


def default_image() -> tuple[np.ndarray, str]:
    """An image that ships with an installed package, so that ``deepops filter`` runs offline: scikit-learn's
    ``load_sample_image('china.jpg')`` (427 x 640 RGB, 8-bit).  scikit-image's images would do as well, but
    scikit-image is not a dependency here, while scikit-learn already is (the digits data)."""
    from sklearn.datasets import load_sample_image

    return load_sample_image("china.jpg"), "sklearn:china.jpg"
