"""Reading and writing images for the classifier and ``deepops filter``: PNG/JPEG/BMP through Pillow, TIFF through
tifffile; 8- and 16-bit integers and floats; grey (H, W) or colour (H, W, C) NumPy arrays in their own dtype."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

IMAGE_SUFFIXES = {".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp"}


def read_image(path: str | Path) -> np.ndarray:
    """An image as a NumPy array (H, W) or (H, W, C), in the file's dtype (uint8, uint16, float...)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"deepops: image '{path}' not found")
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        a = np.asarray(tifffile.imread(path))
        if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[-1] not in (1, 3, 4):
            a = np.moveaxis(a, 0, -1)  # planar (C, H, W) TIFF
    else:
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
    if a.ndim == 3 and a.shape[-1] == 4:
        a = a[..., :3]  # drop alpha
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3):
        raise ValueError(f"deepops: image '{path}' has shape {a.shape}; expected (H, W) or (H, W, C)")
    return a


def to_float01(a: np.ndarray) -> np.ndarray:
    """Integers scaled by their dtype's maximum (uint8 / 255, uint16 / 65535); floats kept as they are."""
    if np.issubdtype(a.dtype, np.integer):
        return a.astype(np.float64) / np.iinfo(a.dtype).max
    if a.dtype == np.bool_:
        return a.astype(np.float64)
    return a.astype(np.float64)


def to_model_input(a: np.ndarray, size: int, channels: int) -> torch.Tensor:
    """(C, size, size) float32 on the 0..1 scale: grey<->colour conversion, then an antialiased bilinear resize."""
    x = torch.from_numpy(to_float01(a).astype(np.float32))
    x = x.unsqueeze(0) if x.ndim == 2 else x.permute(2, 0, 1)
    if channels == 1 and x.shape[0] != 1:
        w = torch.tensor([0.299, 0.587, 0.114])[: x.shape[0]]
        x = (x * (w / w.sum()).view(-1, 1, 1)).sum(0, keepdim=True)
    elif channels == 3 and x.shape[0] == 1:
        x = x.repeat(3, 1, 1)
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
