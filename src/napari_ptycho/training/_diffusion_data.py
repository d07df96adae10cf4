"""Training patches and held-out test objects for the diffusion prior.

The paper's protocol: training patches and test objects come from the same image family
but from disjoint regions. Every bundled scikit-image picture (offline, shipped with the
package) is converted to gray, resized to a short side of 384 pixels and split by column:
training patches come from the left part, test objects only from the right-most
``HELDOUT_WIDTH`` columns, with a ``GUARD`` gap between them so that no rotated or
rescaled training crop can reach a test pixel.

A 2-channel sample is (amplitude, phase), each in [-1, 1]; amplitude and phase maps are
drawn from two different pictures so that the prior does not learn a coupling the
measurement could never confirm.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

#: Bundled scikit-image pictures that load without a download.
BUNDLED = ("astronaut", "brick", "camera", "cell", "chelsea", "coffee", "coins", "grass",
           "gravel", "horse", "hubble_deep_field", "immunohistochemistry", "moon", "rocket",
           "retina", "clock", "shepp_logan_phantom")
SHORT_SIDE = 384
HELDOUT_WIDTH = 136
GUARD = 24


@lru_cache(maxsize=1)
def bundled_images() -> tuple[np.ndarray, ...]:
    """Gray pictures in [0, 1] (short side ``SHORT_SIDE``), normalised per picture."""
    import skimage.data
    from skimage.color import rgb2gray
    from skimage.transform import resize

    out = []
    for name in BUNDLED:
        img = np.asarray(getattr(skimage.data, name)(), dtype=np.float64)
        if img.ndim == 3:
            img = rgb2gray(img[..., :3])
        scale = SHORT_SIDE / min(img.shape)
        shape = (max(SHORT_SIDE, round(img.shape[0] * scale)),
                 max(SHORT_SIDE, round(img.shape[1] * scale)))
        img = resize(img, shape, anti_aliasing=True)
        lo, hi = np.percentile(img, (0.5, 99.5))
        out.append(np.clip((img - lo) / max(hi - lo, 1e-9), 0, 1))
    return tuple(out)


def split_regions(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(training region, held-out region) of one picture, split by column."""
    w = img.shape[1]
    return img[:, : w - HELDOUT_WIDTH - GUARD], img[:, w - HELDOUT_WIDTH:]


def augmented_crop(region: np.ndarray, size: int, rng: np.random.Generator,
                   scale: tuple[float, float] = (0.75, 1.5)) -> np.ndarray:
    """A ``size``² crop of ``region`` with random scaling, rotation, flips and inversion.

    The crop is cut ``√2`` larger than needed before rotating so that the rotated
    centre never contains padding; every pixel comes from ``region``.
    """
    from skimage.transform import resize, rotate

    side = size * rng.uniform(*scale)
    cut = min(int(math.ceil(side * math.sqrt(2))) + 2, *region.shape)
    side = min(side, cut / math.sqrt(2))
    r0 = rng.integers(0, region.shape[0] - cut + 1)
    c0 = rng.integers(0, region.shape[1] - cut + 1)
    patch = rotate(region[r0:r0 + cut, c0:c0 + cut], rng.uniform(0, 360), order=1)
    m = (cut - int(side)) // 2
    patch = resize(patch[m:m + int(side), m:m + int(side)], (size, size), anti_aliasing=True)
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    if rng.random() < 0.5:
        patch = 1.0 - patch
    if rng.random() < 0.5:
        # stretched patches teach the full range; unstretched ones the typical sub-range
        lo, hi = patch.min(), patch.max()
        patch = (patch - lo) / max(hi - lo, 1e-6)
    return np.clip(patch, 0, 1)


def simulator_maps(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(amplitude, phase) maps in [0, 1] from the simulator's synthetic families."""
    from napari_ptycho.physics.objects import make_object

    kind = str(rng.choice(["siemens", "lines", "grf", "large_features"]))
    obj = make_object(kind, size, seed=rng, amplitude_range=(0.0, 1.0),
                      phase_range=(0.0, 1.0))
    return np.abs(obj).astype(np.float64), np.angle(obj).astype(np.float64)


def training_batch(batch: int, size: int, rng: np.random.Generator,
                   images: tuple[np.ndarray, ...] | None = None,
                   synthetic_fraction: float = 0.2) -> np.ndarray:
    """A (batch, 2, size, size) float32 array in [-1, 1] of augmented training samples.

    ``images`` are (H, W) maps in [0, 1] or (2, H, W) amplitude/phase pairs; by default the
    training regions of the bundled pictures are used, with a fraction of synthetic
    simulator objects.
    """
    if images is None:
        images = tuple(split_regions(im)[0] for im in bundled_images())
    out = np.empty((batch, 2, size, size), dtype=np.float32)
    for b in range(batch):
        if synthetic_fraction > 0 and rng.random() < synthetic_fraction:
            amp, pha = simulator_maps(size, rng)
        else:
            first = images[int(rng.integers(len(images)))]
            if first.ndim == 3:  # a user's (amplitude, phase) pair: keep them together
                seed = int(rng.integers(2 ** 31))
                amp = augmented_crop(first[0], size, np.random.default_rng(seed))
                pha = augmented_crop(first[1], size, np.random.default_rng(seed))
            else:
                second = images[int(rng.integers(len(images)))]
                amp = augmented_crop(first, size, rng)
                pha = augmented_crop(second, size, rng)
        out[b, 0] = 2 * amp - 1
        out[b, 1] = 2 * pha - 1
    return out


def heldout_objects(count: int, size: int = 128, seed: int = 1000,
                    amplitude_range: tuple[float, float] = (0.8, 1.0),
                    phase_range: tuple[float, float] = (0.0, 1.0)) -> list[np.ndarray]:
    """``count`` complex64 test objects cut from the held-out columns only.

    Amplitude and phase come from two different pictures; each map is stretched to
    [0, 1] and then onto the requested ranges (thicker = less transmission).
    """
    if size > HELDOUT_WIDTH:
        raise ValueError(f"size must be <= {HELDOUT_WIDTH} (the held-out strip width)")
    rng = np.random.default_rng(seed)
    regions = [split_regions(im)[1] for im in bundled_images()]
    objects = []
    for _ in range(int(count)):
        i, j = rng.choice(len(regions), 2, replace=False)
        maps = []
        for k in (i, j):
            reg = regions[k]
            r0 = rng.integers(0, reg.shape[0] - size + 1)
            c0 = rng.integers(0, reg.shape[1] - size + 1)
            m = reg[r0:r0 + size, c0:c0 + size]
            maps.append((m - m.min()) / max(float(m.max() - m.min()), 1e-9))
        a0, a1 = amplitude_range
        p0, p1 = phase_range
        amp = a1 - (a1 - a0) * maps[0]
        pha = p0 + (p1 - p0) * maps[1]
        objects.append((amp * np.exp(1j * pha)).astype(np.complex64))
    return objects
