"""``deepops filter [IMAGE] --kernel blur|sharpen|sobel-x|sobel-y|laplace [--out PNG]``: the lecture's 3x3 kernels,
applied with ``deepops.conv2d`` (see deepops/filters.py for border handling and output conversion)."""

from __future__ import annotations


def register(parsers) -> None:
    f = parsers["top"].add_parser(
        "filter",
        help="apply a classic 3x3 kernel to an image with deepops.conv2d",
        description="Filter an image (PNG/TIFF/JPEG; grey or colour; 8/16-bit) with a classic 3x3 kernel. Without "
        "IMAGE, scikit-learn's bundled sample image china.jpg is used (offline).",
    )
    f.add_argument("image", nargs="?", default=None, help="input image (default: scikit-learn's china.jpg)")
    f.add_argument("--kernel", required=True, choices=["blur", "sharpen", "sobel-x", "sobel-y", "laplace"])
    f.add_argument("--border", default="reflect", choices=["reflect", "mirror", "nearest", "zero"],
                   help="how pixels beyond the edge are made up (default: reflect, as scipy.ndimage)")
    f.add_argument("--output", default=None, choices=["clip", "abs", "stretch"],
                   help="float response -> image dtype (default: abs for sobel/laplace, clip otherwise)")
    f.add_argument("--grey", action="store_true", help="convert a colour image to grey first")
    f.add_argument("--device", default="cpu")
    f.add_argument("--out", default=None, help="output PNG or TIFF (default: <image name>-<kernel>.png here)")
    f.set_defaults(func=_run)


def _run(args) -> int:
    from pathlib import Path

    import numpy as np

    from deepops import filters
    from deepops.data.images import read_image, write_image

    if args.image is None:
        img, name = filters.default_image()
    else:
        img, name = read_image(args.image), args.image
    if args.grey and img.ndim == 3:
        g = img[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        img = np.clip(np.rint(g), 0, np.iinfo(img.dtype).max).astype(img.dtype) if np.issubdtype(img.dtype, np.integer) else g
    out = filters.apply(img, args.kernel, args.border, args.output, args.device)
    path = Path(args.out) if args.out else Path(f"{Path(name.split(':')[-1]).stem}-{args.kernel}.png")
    if out.dtype.kind == "f" and path.suffix.lower() not in (".tif", ".tiff"):
        path = path.with_suffix(".tif")  # float results only fit a TIFF
    if out.dtype == np.uint16 and out.ndim == 3 and path.suffix.lower() == ".png":
        path = path.with_suffix(".tif")  # 16-bit colour: PNG writer cannot; keep all the bits in a TIFF
    write_image(path, out)
    print(f"{name} {img.shape} {img.dtype} -> {args.kernel} ({args.border} border) -> {path} "
          f"[min {out.min()}, max {out.max()}]")
    return 0
