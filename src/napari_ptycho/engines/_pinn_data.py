"""Turning a :class:`~napari_ptycho.data.PtychoData` scan into PtychoPINN training groups.

Kept apart from the engine so the benchmark and the training script reuse it: pattern-size
fitting (crop or bin to the model's N), the probe (from the data, or estimated by a short
rPIE run), K-nearest-neighbour groups and the network's input normalisation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

RESIZE_MODES = ("refuse", "crop", "bin")
PROBE_SOURCES = ("auto", "data", "rpie")


@dataclass
class PinnScan:
    """A scan ready for the network (all tensors on one device).

    Attributes
    ----------
    counts : Tensor (P, N, N)
        Measured intensities, DC centred.
    inputs : Tensor (P, N, N)
        Network input: ``sqrt(counts)`` scaled so a mean pattern has Σ x² = N².
    positions : Tensor (P, 2) float64
        Window corners in (possibly rescaled) object pixels.
    probe : Tensor (N, N) complex or None
        Unit-power probe (first mode).
    probe_power : float
        Photons per pattern delivered through a unit-transmission object.
    groups : Tensor (G, K) long
        Pattern indices of every group.
    offsets : Tensor (G, K, 2) float32
        ``r_k − µ`` of each group member.
    object_shape : tuple of int
        Object frame of the (rescaled) positions.
    mask : Tensor (N, N) float or None
        1 on valid detector pixels.
    truth : Tensor (H, W) complex or None
        Ground-truth object in the same frame (supervised training, metrics).
    """

    counts: torch.Tensor
    inputs: torch.Tensor
    positions: torch.Tensor
    probe: torch.Tensor | None
    probe_power: float
    groups: torch.Tensor
    offsets: torch.Tensor
    object_shape: tuple[int, int]
    mask: torch.Tensor | None
    truth: torch.Tensor | None
    resized: str


def make_groups(positions: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Groups of the K nearest scan positions (a 2×2 window on PtychoPINN's grouped grids).

    Every pattern seeds one group of itself and its K − 1 nearest neighbours; identical
    groups are kept once.

    Returns
    -------
    groups : ndarray (G, K) of int
    offsets : ndarray (G, K, 2) of float32
        Position minus the group's mean rounded to whole pixels (whole-pixel scans then
        translate exactly).
    """
    from scipy.spatial import cKDTree

    pos = np.asarray(positions, dtype=np.float64)
    if len(pos) < k:
        raise ValueError(f"the scan has {len(pos)} patterns, too few to form groups of "
                         f"group_size={k}; lower group_size or load a longer scan")
    _, idx = cKDTree(pos).query(pos, k=k)
    idx = np.asarray(idx).reshape(len(pos), k)
    groups = np.unique(np.sort(idx, axis=1), axis=0)
    members = pos[groups]
    centre = np.round(members.mean(axis=1, keepdims=True))
    return groups, (members - centre).astype(np.float32)


def fit_pattern_size(counts: np.ndarray, positions: np.ndarray, probe: np.ndarray | None,
                     n: int, resize: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Bring (P, H, H) patterns to the model's N×N, or refuse.

    ``"crop"`` keeps the central N×N detector pixels: the object pixel grows by H/N, so
    positions scale by N/H and the probe is resampled by cropping its far field (exactly
    what the detector saw). ``"bin"`` sums (H/N)² pixel blocks: the window shrinks to the
    probe's central N×N, positions move by (H − N)/2.
    """
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {RESIZE_MODES} (got {resize!r})")
    h, w = counts.shape[-2:]
    if h != w:
        raise ValueError(f"PtychoPINN needs square patterns; got {h}x{w}")
    if h == n:
        return counts, positions, probe
    if resize == "refuse":
        raise ValueError(f"the patterns are {h}x{w} but the model takes {n}x{n}: choose "
                         "resize='crop' or 'bin', or a model of that size")
    if resize == "crop":
        if h < n:
            raise ValueError(f"cannot crop {h}x{w} patterns to the larger {n}x{n}")
        c = (h - n) // 2
        counts = counts[:, c:c + n, c:c + n]
        positions = positions * (n / h)
        if probe is not None:
            field = np.fft.fftshift(np.fft.fft2(probe, norm="ortho"), axes=(-2, -1))
            field = field[..., c:c + n, c:c + n]
            probe = np.fft.ifft2(np.fft.ifftshift(field, axes=(-2, -1)), norm="ortho")
        return counts, positions, probe
    if h % n:
        raise ValueError(f"cannot bin {h}x{w} patterns to {n}x{n}: {h} is not a multiple "
                         f"of {n}")
    b = h // n
    counts = counts.reshape(len(counts), n, b, n, b).sum(axis=(2, 4))
    c = (h - n) // 2
    if probe is not None:
        probe = probe[..., c:c + n, c:c + n]
    return counts, positions + c, probe


def estimate_probe_rpie(data: Any, iterations: int, seed: int, device: str) -> np.ndarray:
    """A probe from a short rPIE run (the "no probe" fallback)."""
    from napari_ptycho.engines.base import reconstruct

    result = reconstruct(data, "rpie", iterations=int(iterations), seed=int(seed),
                         device=device, probe_init="data")
    return np.asarray(result.probe)


def prepare_scan(data: Any, n: int, k: int, resize: str = "refuse",
                 probe_source: str = "auto", probe_iterations: int = 30, seed: int = 0,
                 device: Any = "cpu", need_probe: bool = True) -> PinnScan:
    """Validate ``data`` and build the groups, inputs and probe PtychoPINN trains on.

    Raises
    ------
    ValueError
        Not a far-field 2D scan, non-finite data, wrong pattern size (see
        :func:`fit_pattern_size`), no probe when ``probe_source="data"``, or too few
        patterns for one group.
    """
    from napari_ptycho.data import PtychoData

    if not isinstance(data, PtychoData):
        raise ValueError(f"data must be a PtychoData scan (got {type(data).__name__})")
    if data.geometry.near_field:
        raise ValueError("PtychoPINN is a far-field model; this scan is near-field")
    if probe_source not in PROBE_SOURCES:
        raise ValueError(f"probe_source must be one of {PROBE_SOURCES} (got {probe_source!r})")
    counts = data.intensities()
    if not np.all(np.isfinite(counts)):
        raise ValueError("data.diffraction contains NaN or infinite values")
    counts = np.clip(counts, 0, None)
    probe = None
    if need_probe:
        if probe_source == "data" and data.probe is None:
            raise ValueError("probe_source='data' but the scan carries no probe: choose "
                             "probe_source='rpie' to estimate one with a short rPIE run")
        if probe_source == "rpie" or (probe_source == "auto" and data.probe is None):
            probe = estimate_probe_rpie(data, probe_iterations, seed, str(device))
        else:
            probe = np.asarray(data.probe)
        probe = probe.reshape(-1, *probe.shape[-2:])[0]
        det = data.detector_shape
        if probe.shape != det:  # a smaller window is zero-padded on the detector frame
            top, left = (det[0] - probe.shape[0]) // 2, (det[1] - probe.shape[1]) // 2
            big = np.zeros(det, np.complex64)
            big[top:top + probe.shape[0], left:left + probe.shape[1]] = probe
            probe = big
    mask = data.mask
    counts, positions, probe = fit_pattern_size(counts, data.positions.copy(), probe, n,
                                                resize)
    if mask is not None and mask.shape != (n, n):
        mask = None if mask.all() else fit_pattern_size(
            mask[None].astype(np.float32), np.zeros((1, 2)), None, n, resize)[0][0] > 0
    groups, offsets = make_groups(positions, k)
    mean_total = float(counts.sum(axis=(1, 2)).mean())
    if not mean_total > 0:
        raise ValueError("the diffraction data hold no signal (all zero)")
    inputs = np.sqrt(counts * (n * n / mean_total)).astype(np.float32)
    power = mean_total
    probe_t = None
    if probe is not None:
        power = float(np.sum(np.abs(probe) ** 2))
        if not power > 0 or not math.isfinite(power):
            raise ValueError("the probe is zero or not finite")
        probe_t = torch.as_tensor((probe / math.sqrt(power)).astype(np.complex64), device=device)
    resized = data.detector_shape[0] != n
    object_shape = (int(np.ceil(positions[:, 0].max())) + n + 1,
                    int(np.ceil(positions[:, 1].max())) + n + 1)
    truth = None
    if not resized:  # the truth is only comparable in the data's own object frame
        object_shape = tuple(int(s) for s in data.object_shape)
        if data.truth_object is not None:
            truth = torch.as_tensor(np.asarray(data.truth_object, np.complex64),
                                    device=device)
            object_shape = tuple(int(s) for s in truth.shape)
    return PinnScan(
        counts=torch.as_tensor(counts, dtype=torch.float32, device=device),
        inputs=torch.as_tensor(inputs, device=device),
        positions=torch.as_tensor(positions, dtype=torch.float64, device=device),
        probe=probe_t, probe_power=power,
        groups=torch.as_tensor(groups, dtype=torch.long, device=device),
        offsets=torch.as_tensor(offsets, device=device), object_shape=object_shape,
        mask=None if mask is None else torch.as_tensor(mask, dtype=torch.float32,
                                                       device=device),
        truth=truth, resized=resize if resized else "none")
