"""SIMCEP-like synthetic fluorescence microscopy images of cell nuclei, with exact ground truth.

Strategy (after the method of Lehmussola et al., IEEE TMI 2007; our own implementation, NumPy + a little torch):

1. *Shape*: 11 angles on a circle, each point perturbed (``shape_jitter`` on position, ``angle_jitter`` on angle),
   closed with a periodic Catmull-Rom cubic through the points, scaled by the nucleus radius, filled (even-odd ray
   test against the densely sampled outline) into a binary mask on a small patch.
2. *Texture*: octaves of smoothed random grids (Perlin-like), bicubically upsampled to the patch and weighted by
   ``persistence**k``; normalised to [0, 1] and lifted to ``base + (1 - base) * t``; times a per-nucleus brightness.
3. *Placement*: cluster centres drawn uniformly; each nucleus goes near a cluster centre with probability
   ``cluster_prob`` (Gaussian spread ``cluster_spread`` x image size), else uniformly.  A nucleus whose overlap with
   the union of the others (or with any single other one, checked both ways) exceeds ``overlap`` is redrawn, at most
   ``retries`` times; then generation stops, so ``n_cells`` is an upper bound and the truth is what was placed.
   Where nuclei overlap, the ideal image is their average (sum / count).
4. *Measurement*: each nucleus gets a depth |N(0, focus_sd)| mapped to a Gaussian blur sigma in ``blur_sigma``;
   vignetting (illumination falling off from a slightly misaligned centre), autofluorescence (faint low-frequency
   texture), Poisson shot noise (``photons`` at full scale, optional) and Gaussian CCD noise (``ccd_var``), then
   8- or 16-bit quantisation.

Ground truth per nucleus (computed from the mask as placed, clipped to the image): the tight box ``(x1, y1, x2, y2)``
in pixel-edge coordinates (a nucleus covering columns 3..7 has x1 = 3, x2 = 8), the centroid ``(row, col)`` and the
mask itself (an instance label image, the later nucleus winning where they overlap).

A parameter given as a ``(lo, hi)`` tuple is drawn uniformly per image, which is how the presets vary difficulty.
Everything is driven by one ``numpy.random.Generator``: the same seed gives the same images.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

Range = float | tuple[float, float]

N_CONTROL_POINTS = 11  # points on the perturbed circle (as in SIMCEP)
OUTLINE_SAMPLES = 8  # samples of the closed cubic between two control points
MIN_VISIBLE = 0.6  # a nucleus must keep this fraction of its area inside the image


@dataclasses.dataclass
class SimcepParams:
    """Parameters of one image family; ``(lo, hi)`` tuples are drawn uniformly for each image."""

    size: tuple[int, int] = (224, 224)  # (height, width)
    n_cells: tuple[int, int] = (1, 15)  # requested number of nuclei (an upper bound), drawn per image
    radius: float = 10.0  # mean nucleus radius in pixels
    radius_sd: float = 2.0  # per-nucleus spread of the radius
    radius_min: float = 5.0
    shape_jitter: float = 0.1  # SIMCEP s1: perturbation of the control points
    angle_jitter: float = 0.1  # SIMCEP s2: perturbation of their angles
    elongation: Range = (1.0, 1.3)  # axis ratio of the blob (then randomly rotated)
    n_clusters: tuple[int, int] = (1, 5)
    cluster_prob: Range = (0.0, 0.5)  # probability that a nucleus is placed near a cluster centre
    cluster_spread: float = 0.05  # Gaussian spread around a cluster centre, as a fraction of the image size
    overlap: Range = (0.0, 0.1)  # largest allowed overlapping fraction of a nucleus
    retries: int = 60
    brightness: Range = (0.6, 1.0)  # per-nucleus peak intensity
    persistence: float = 0.5  # texture: weight ratio between octaves
    octaves: tuple[int, int] = (2, 6)  # texture: first and last octave (grid 2**k)
    texture_base: float = 0.2  # texture lifted to base + (1 - base) * t: no black inside a nucleus
    focus_sd: float = 0.5  # depth ~ |N(0, focus_sd)|
    blur_sigma: tuple[float, float] = (0.5, 2.0)  # sigma at depth 0 and at depth 3 * focus_sd (linear between)
    illumination: Range = (0.0, 0.3)  # strength of the vignetting (fraction lost in the far corner)
    misalignment: float = 0.1  # offset of the illumination centre, as a fraction of the image size
    autofluorescence: Range = (0.0, 0.05)  # background texture amplitude, relative to full scale
    background: Range = (0.02, 0.08)  # constant background level
    ccd_var: Range = 1e-4  # Gaussian noise variance on the [0, 1] scale
    photons: float | None = None  # Poisson noise: expected photon count at full scale (None: no shot noise)
    bit_depth: int = 8  # 8 or 16

    def __post_init__(self) -> None:
        if self.bit_depth not in (8, 16):
            raise ValueError(f"deepops.data.simcep: 'bit_depth' must be 8 or 16, got {self.bit_depth}")
        if len(self.size) != 2 or min(self.size) < 16:
            raise ValueError(f"deepops.data.simcep: 'size' must be (height, width) >= 16, got {self.size}")


PRESETS: dict[str, SimcepParams] = {
    # a few well-separated, fairly sharp nuclei, low noise
    "easy": SimcepParams(n_cells=(1, 15), cluster_prob=(0.0, 0.3), overlap=(0.0, 0.05), ccd_var=1e-4),
    # many nuclei in clusters, touching and overlapping (up to a quarter of a nucleus hidden)
    "crowded": SimcepParams(
        n_cells=(20, 45),
        n_clusters=(1, 4),
        cluster_prob=(0.4, 1.0),
        cluster_spread=0.08,
        overlap=(0.05, 0.25),
        illumination=(0.0, 0.4),
        ccd_var=(1e-4, 5e-4),
    ),
    # the Jackson & Obara-like mix with strong noise, shot noise, dimmer and blurrier nuclei
    "noisy": SimcepParams(
        n_cells=(1, 15),
        cluster_prob=(0.0, 1.0),
        overlap=(0.0, 0.3),
        brightness=(0.35, 0.9),
        blur_sigma=(0.8, 3.0),
        illumination=(0.0, 0.5),
        autofluorescence=(0.02, 0.1),
        ccd_var=(1e-3, 4e-3),
        photons=300.0,
    ),
}


def preset(name: str, **overrides: Any) -> SimcepParams:
    """A copy of the named preset (``easy``, ``crowded``, ``noisy``) with fields overridden."""
    if name not in PRESETS:
        raise ValueError(f"deepops.data.simcep: 'preset' must be one of {sorted(PRESETS)}, got {name!r}")
    return dataclasses.replace(PRESETS[name], **overrides)


@dataclasses.dataclass
class Sample:
    image: np.ndarray  # (H, W) uint8 or uint16
    boxes: np.ndarray  # (N, 4) float32, (x1, y1, x2, y2) tight boxes in pixel-edge coordinates
    centers: np.ndarray  # (N, 2) float32 centroids as (row, col)
    labels: np.ndarray  # (H, W) int32 instance labels, 0 background, i + 1 for nucleus i (later wins on overlap)
    areas: np.ndarray  # (N,) int64 mask areas inside the image
    params: dict  # the per-image values that were drawn

    @property
    def count(self) -> int:
        return len(self.boxes)


# ------------------------------------------------------------------------------------------------------- pieces


def _draw(rng: np.random.Generator, v: Range) -> float:
    return float(rng.uniform(v[0], v[1])) if isinstance(v, tuple) else float(v)


def _closed_catmull_rom(pts: np.ndarray, samples: int) -> np.ndarray:
    """Dense outline of the closed C1 cubic through ``pts`` (K, 2)."""
    p0, p1, p2, p3 = (np.roll(pts, -s, axis=0) for s in (-1, 0, 1, 2))
    t = np.linspace(0.0, 1.0, samples, endpoint=False)[None, :, None]
    a = 2 * p1
    b = p2 - p0
    c = 2 * p0 - 5 * p1 + 4 * p2 - p3
    d = -p0 + 3 * p1 - 3 * p2 + p3
    out = 0.5 * (a[:, None] + b[:, None] * t + c[:, None] * t**2 + d[:, None] * t**3)
    return out.reshape(-1, 2)


def _fill(poly: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test of pixel centres (ys x xs grid) against ``poly`` (M, 2) as (x, y)."""
    px, py = xs[None, :, None], ys[:, None, None]
    x0, y0 = poly[:, 0], poly[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    crosses = (y0 > py) != (y1 > py)
    with np.errstate(divide="ignore", invalid="ignore"):
        xint = x0 + (py - y0) * (x1 - x0) / (y1 - y0)
    return np.count_nonzero(crosses & (px < xint), axis=-1) % 2 == 1


def nucleus_mask(rng: np.random.Generator, radius: float, p: SimcepParams) -> tuple[np.ndarray, float, float]:
    """A filled irregular blob on its own patch; returns (mask, centre row, centre col) in patch coordinates."""
    t = np.linspace(0.0, 2 * np.pi, N_CONTROL_POINTS, endpoint=False)
    u = rng.uniform(-1, 1, size=(4, N_CONTROL_POINTS))
    x = p.shape_jitter * u[0] + np.cos(t + p.angle_jitter * u[1])
    y = p.shape_jitter * u[2] + np.sin(t + p.angle_jitter * u[3])
    e = _draw(rng, p.elongation)
    x, y = x * np.sqrt(e), y / np.sqrt(e)
    th = rng.uniform(0, np.pi)
    pts = np.stack([x * np.cos(th) - y * np.sin(th), x * np.sin(th) + y * np.cos(th)], 1) * radius
    outline = _closed_catmull_rom(pts, OUTLINE_SAMPLES)
    half = int(np.ceil(np.abs(outline).max())) + 1
    c = half + rng.uniform(0, 1, size=2)  # sub-pixel position of the centre on the patch
    coords = np.arange(2 * half + 2) + 0.5
    mask = _fill(outline + np.array([c[1], c[0]]), coords, coords)  # outline is (x, y)
    return mask, float(c[0]), float(c[1])


def _texture(rng: np.random.Generator, shape: tuple[int, int], p: SimcepParams) -> np.ndarray:
    h, w = shape
    acc = np.zeros((h, w), np.float32)
    for k in range(p.octaves[0], p.octaves[1] + 1):
        n = 2**k
        g = rng.random((n + 2, n + 2), dtype=np.float32)
        g = sum(g[i : i + n, j : j + n] for i in range(3) for j in range(3)) / 9  # light 3x3 box smoothing
        up = F.interpolate(torch.from_numpy(g)[None, None], size=(h, w), mode="bicubic", align_corners=True)
        up = up[0, 0].numpy()
        acc += p.persistence**k * up
    lo, hi = acc.min(), acc.max()
    acc = (acc - lo) / (hi - lo) if hi > lo else np.zeros_like(acc)
    return p.texture_base + (1 - p.texture_base) * acc


def _gauss_kernel(sigma: float) -> np.ndarray:
    r = max(1, int(np.ceil(3 * sigma)))
    x = np.arange(-r, r + 1, dtype=np.float32)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _blur(a: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur as a sum of shifted copies (kernels are short); the caller pads the patch."""
    if sigma <= 0:
        return a
    k = _gauss_kernel(sigma)
    r = len(k) // 2
    for axis in (0, 1):
        p = np.pad(a, [(r, r) if ax == axis else (0, 0) for ax in (0, 1)])
        n = a.shape[axis]
        a = sum(w * (p[j : j + n] if axis == 0 else p[:, j : j + n]) for j, w in enumerate(k))
    return a


def _low_freq(rng: np.random.Generator, shape: tuple[int, int], grid: int = 6) -> np.ndarray:
    g = torch.from_numpy(rng.random((1, 1, grid, grid), dtype=np.float32))
    up = F.interpolate(g, size=shape, mode="bicubic", align_corners=True)[0, 0].numpy()
    lo, hi = up.min(), up.max()
    return (up - lo) / (hi - lo + 1e-12)


# ------------------------------------------------------------------------------------------------------- image


def resized(p: SimcepParams, size: tuple[int, int]) -> SimcepParams:
    """The same family at another image size: the number of nuclei scales with the area (same density)."""
    f = (size[0] * size[1]) / (p.size[0] * p.size[1])
    lo, hi = max(1, round(p.n_cells[0] * f)), max(1, round(p.n_cells[1] * f))
    return dataclasses.replace(p, size=tuple(size), n_cells=(lo, hi))


def generate(p: SimcepParams | str = "easy", seed: int | np.random.Generator | None = None) -> Sample:
    """One synthetic image with its ground truth."""
    if isinstance(p, str):
        p = preset(p)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    H, W = p.size
    n_req = int(rng.integers(p.n_cells[0], p.n_cells[1] + 1))
    clust = _draw(rng, p.cluster_prob)
    ovl = _draw(rng, p.overlap)
    n_cl = int(rng.integers(p.n_clusters[0], p.n_clusters[1] + 1))
    centres = rng.uniform([0, 0], [H, W], size=(n_cl, 2))
    spread = p.cluster_spread * np.array([H, W])

    placed: list[tuple[int, int, np.ndarray]] = []  # (top, left, mask clipped to the image)
    count = np.zeros((H, W), np.int32)
    for _ in range(n_req):
        ok = False
        for _try in range(p.retries):
            r = max(p.radius_min, p.radius + p.radius_sd * rng.standard_normal())
            mask, cy, cx = nucleus_mask(rng, r, p)
            if rng.random() < clust:
                pos = centres[rng.integers(n_cl)] + spread * rng.standard_normal(2)
            else:
                pos = rng.uniform([0, 0], [H, W])
            top, left = int(np.floor(pos[0] - cy)), int(np.floor(pos[1] - cx))
            full = int(mask.sum())
            t0, l0 = max(top, 0), max(left, 0)
            b0, r0 = min(top + mask.shape[0], H), min(left + mask.shape[1], W)
            if b0 <= t0 or r0 <= l0:
                continue
            m = mask[t0 - top : b0 - top, l0 - left : r0 - left]
            area = int(m.sum())
            if area < MIN_VISIBLE * full:
                continue
            region = count[t0:b0, l0:r0]
            if np.count_nonzero(m & (region > 0)) > ovl * area:
                continue
            bad = False
            for tp, lf, om in placed:  # the other direction: no placed nucleus may lose more than `ovl`
                it, il = max(tp, t0), max(lf, l0)
                ib, ir = min(tp + om.shape[0], b0), min(lf + om.shape[1], r0)
                if ib <= it or ir <= il:
                    continue
                inter = np.count_nonzero(om[it - tp : ib - tp, il - lf : ir - lf] & m[it - t0 : ib - t0, il - l0 : ir - l0])
                if inter > ovl * om.sum():
                    bad = True
                    break
            if bad:
                continue
            placed.append((t0, l0, m))
            count[t0:b0, l0:r0] += m
            ok = True
            break
        if not ok:
            break  # retry limit reached: stop early, as SIMCEP does

    n = len(placed)
    depth_sd = p.focus_sd
    acc = np.zeros((H, W), np.float32)
    labels = np.zeros((H, W), np.int32)
    boxes = np.zeros((n, 4), np.float32)
    cents = np.zeros((n, 2), np.float32)
    areas = np.zeros(n, np.int64)
    for i, (t0, l0, m) in enumerate(placed):
        ys, xs = np.nonzero(m)
        boxes[i] = (l0 + xs.min(), t0 + ys.min(), l0 + xs.max() + 1, t0 + ys.max() + 1)
        cents[i] = (t0 + ys.mean() + 0.5, l0 + xs.mean() + 0.5)
        areas[i] = len(ys)
        labels[t0 : t0 + m.shape[0], l0 : l0 + m.shape[1]][m] = i + 1
        obj = _texture(rng, m.shape, p) * m * _draw(rng, p.brightness)
        depth = abs(depth_sd * rng.standard_normal())
        lo, hi = p.blur_sigma
        sigma = lo + (hi - lo) * min(depth / (3 * depth_sd), 1.0) if depth_sd > 0 else lo
        pad = int(np.ceil(3 * sigma)) + 1
        big = np.pad(obj / np.maximum(count[t0 : t0 + m.shape[0], l0 : l0 + m.shape[1]], 1), pad)
        big = _blur(big, sigma)
        T, L = t0 - pad, l0 - pad
        a0, c0 = max(T, 0), max(L, 0)
        a1, c1 = min(T + big.shape[0], H), min(L + big.shape[1], W)
        acc[a0:a1, c0:c1] += big[a0 - T : a1 - T, c0 - L : c1 - L]

    # measurement: vignetting, background, autofluorescence, noise
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    off = p.misalignment * rng.standard_normal(2) * np.array([H, W])
    r2 = (yy - H / 2 - off[0]) ** 2 + (xx - W / 2 - off[1]) ** 2
    vign = 1 - _draw(rng, p.illumination) * r2 / r2.max()
    bg = _draw(rng, p.background)
    af = _draw(rng, p.autofluorescence)
    img = (acc + bg + af * _low_freq(rng, (H, W))) * vign
    if p.photons:
        img = rng.poisson(np.clip(img, 0, None) * p.photons).astype(np.float32) / p.photons
    var = _draw(rng, p.ccd_var)
    img = img + np.sqrt(var) * rng.standard_normal((H, W)).astype(np.float32)
    top = 255 if p.bit_depth == 8 else 65535
    q = np.clip(np.rint(np.clip(img, 0, 1) * top), 0, top).astype(np.uint8 if p.bit_depth == 8 else np.uint16)
    drawn = dict(n_requested=n_req, cluster_prob=clust, overlap=ovl, n_clusters=n_cl, ccd_var=var, background=bg)
    return Sample(image=q, boxes=boxes, centers=cents, labels=labels, areas=areas, params=drawn)


def generate_set(p: SimcepParams | str, n: int, seed: int) -> list[Sample]:
    """``n`` images; image i uses the seed sequence (seed, i), so sets are reproducible and can be split."""
    return [generate(p, np.random.default_rng([seed, i])) for i in range(n)]
