"""The one image reader of deepops (classifier folders, GAN folders, ``deepops count``, ``predict classifier``,
``deepops filter``) and the conversions from a read image to a network input.

Reading (:func:`read_image`): PNG, JPEG and BMP through Pillow, TIFF through tifffile; 8- and 16-bit integers and
floats, kept in the file's dtype; the result is a NumPy array (H, W) or (H, W, C), channels last.

* TIFF axes are taken from the file (ImageJ hyperstacks ``TZCYX``, OME, RGB samples ``YXS`` or planar ``SYX``):
  ``Y`` and ``X`` are the image, ``C`` (channels) and ``S`` (samples: RGB) the channels; time points ``T`` and
  z-slices ``Z`` must be single (a stack is refused with a clear error rather than read as colour); an axis the
  file does not name (``Q``, ``I``: pages without metadata) of more than one plane is taken as the channels.
  Alpha samples (the TIFF's extra samples) are dropped.
* Pillow modes: palette, grey+alpha, CMYK and YCbCr images become RGB (RGBA first when they carry transparency),
  16-bit greys (``I;16``) stay ``uint16``, 32-bit integer greys become ``uint16`` when they fit, else ``float64``.
  Alpha is dropped.
* ``channel=k`` returns the 2-D plane of channel ``k`` (channel 0 of a grey image is the image).

Conversions: :func:`to_float01` puts any dtype on the 0..1 scale, :func:`to_channels` makes grey from colour (ITU-R
601 luma weights) or colour from grey (repeated), :func:`default_channels` picks 1 or 3 channels for a set of images,
:func:`to_model_input` does all of it and resizes for the classifier.  :func:`write_image` writes PNG or TIFF.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F

#: the file suffixes every reader of image folders accepts
IMAGE_SUFFIXES = {".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp"}

_PLANE_AXES = {"T": "time points", "Z": "z-slices"}
_CHANNEL_AXES = "CS"


def read_image(path: str | Path, channel: int | None = None) -> np.ndarray:
    """An image as a NumPy array (H, W) or (H, W, C) in the file's dtype; ``channel=k``: the (H, W) plane of channel
    ``k``.  Raises ``FileNotFoundError`` for a missing file and ``ValueError`` (naming the file) for an image that is
    not 2-D or a channel that does not exist."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"deepops: image '{path}' not found")
    a = _read_tiff(path) if path.suffix.lower() in (".tif", ".tiff") else _read_pillow(path)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3):
        raise ValueError(f"deepops: image '{path}' has shape {a.shape}; expected (H, W) or (H, W, C)")
    if channel is None:
        return a
    if a.ndim == 2:
        if channel != 0:
            raise ValueError(f"{path}: channel {channel} asked for, but the image has a single channel")
        return a
    if not 0 <= channel < a.shape[-1]:
        raise ValueError(f"{path}: channel {channel} is out of range (the image has {a.shape[-1]} channels)")
    return a[..., channel]


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    with tifffile.TiffFile(path) as tf:
        series = tf.series[0]
        a, axes = np.asarray(series.asarray()), series.axes.upper()
        extra = len(tf.pages[0].extrasamples or ())
    if len(axes) != a.ndim:  # never seen; refuse rather than guess
        raise ValueError(f"deepops: '{path}': axes {axes!r} do not match the image's shape {a.shape}")
    for ax, what in _PLANE_AXES.items():
        if ax in axes and a.shape[axes.index(ax)] > 1:
            raise ValueError(
                f"deepops: '{path}' has {a.shape[axes.index(ax)]} {what} (axes {axes}, shape {a.shape}); "
                "deepops reads 2-D images (optionally with channels): save one plane"
            )
    # drop every single-plane axis that is not Y or X
    keep = [i for i, ax in enumerate(axes) if ax in "YX" or a.shape[i] > 1]
    a = a.reshape([a.shape[i] for i in keep])
    axes = "".join(axes[i] for i in keep)
    if "Y" not in axes or "X" not in axes:
        raise ValueError(f"deepops: '{path}' has no Y and X axes (axes {axes!r})")
    others = [i for i, ax in enumerate(axes) if ax not in "YX"]
    if len(others) > 1:
        raise ValueError(f"deepops: '{path}' has more than one non-spatial axis (axes {axes}, shape {a.shape})")
    if others:
        i = others[0]
        a = np.moveaxis(a, i, -1)
        if axes[i] == "S" and extra:
            a = a[..., : a.shape[-1] - extra]  # alpha / extra samples of an RGB(A) image
        axes = axes.replace(axes[i], "") + "C"
    if axes.index("Y") > axes.index("X"):  # (X, Y) order: transpose to rows first
        a = np.swapaxes(a, 0, 1)
    return a


def _read_pillow(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        if im.mode in ("P", "PA", "LA", "CMYK", "YCbCr", "1"):
            im = im.convert("RGBA" if "A" in im.mode or "transparency" in im.info else "RGB")
        if im.mode in ("I;16", "I;16B", "I;16L"):
            a = np.asarray(im).astype(np.uint16)
        elif im.mode == "I":
            a = np.asarray(im)
            a = a.astype(np.uint16) if a.min() >= 0 and a.max() < 65536 else a.astype(np.float64)
        else:
            a = np.asarray(im)
    if a.ndim == 3 and a.shape[-1] in (2, 4):
        a = a[..., :-1]  # drop alpha (LA, RGBA)
    return a


def to_float01(a: np.ndarray) -> np.ndarray:
    """float64 on the 0..1 scale: integers divided by their dtype's maximum (uint8 / 255, uint16 / 65535), booleans
    as 0/1, floats kept when they are at most 1, else divided by their maximum."""
    if a.dtype == np.bool_:
        return a.astype(np.float64)
    if np.issubdtype(a.dtype, np.integer):
        return a.astype(np.float64) / np.iinfo(a.dtype).max
    a = a.astype(np.float64)
    top = float(np.nanmax(a)) if a.size else 0.0
    return a / top if top > 1 else a


def to_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """(C, H, W) -> (channels, H, W): colour to grey with the ITU-R 601 luma weights (0.299, 0.587, 0.114), grey to
    colour by repeating; anything else is refused."""
    if x.shape[0] == channels:
        return x
    if channels == 1 and x.shape[0] in (2, 3):
        w = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype)[: x.shape[0]]
        return (x * (w / w.sum()).view(-1, 1, 1)).sum(0, keepdim=True)
    if x.shape[0] == 1:
        return x.repeat(channels, 1, 1)
    raise ValueError(f"deepops: cannot make {channels} channel(s) from an image with {x.shape[0]}")


def default_channels(images: Iterable[np.ndarray]) -> int:
    """1 when every image (as read by :func:`read_image`) is grey, else 3."""
    return 1 if all(a.ndim == 2 for a in images) else 3


def to_model_input(a: np.ndarray, size: int, channels: int) -> torch.Tensor:
    """(C, size, size) float32 on the 0..1 scale: grey<->colour conversion, then an antialiased bilinear resize."""
    x = torch.from_numpy(to_float01(a).astype(np.float32))
    x = to_channels(x.unsqueeze(0) if x.ndim == 2 else x.permute(2, 0, 1), channels)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x.unsqueeze(0), size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0]
    return x.clamp(0, 1).contiguous()


def write_image(path: str | Path, a: np.ndarray) -> None:
    """Write PNG (8-bit grey/colour, 16-bit grey) with Pillow or TIFF (any) with tifffile, chosen by suffix.

    16-bit colour does not fit Pillow's PNG writer: ask for ``.tif`` for it (a clear error says so)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        tifffile.imwrite(path, a, photometric="rgb" if a.ndim == 3 else "minisblack")
        return
    from PIL import Image

    if a.dtype == np.uint16:
        if a.ndim == 3:
            raise ValueError(f"deepops: '{path}': 16-bit colour cannot be written as PNG here; use a .tif output")
        Image.fromarray(np.ascontiguousarray(a)).save(path)  # uint16 (H, W) -> mode I;16
        return
    if a.dtype != np.uint8:
        raise ValueError(f"deepops: '{path}': only uint8/uint16 images can be written as PNG, got {a.dtype}")
    Image.fromarray(a).save(path)
