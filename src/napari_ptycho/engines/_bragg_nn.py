"""Shared pieces of the Bragg network engines (AutoPhaseNN, 3D-CDI-NN).

* weights: shipped files under ``napari_ptycho/weights`` (``torch.load(weights_only=True)``
  of ``{"spec", "state_dict"}``), cached per path and device;
* the network input: a volume of another size is refused with a clear message unless the
  caller asks to ``"bin"`` it (crop a window of ``size × f`` around the peak, ``f = n //
  size``, then sum-bin by ``f``) or to ``"crop"`` it (a ``size³`` window around the peak,
  zero-filled outside the array);
* the prediction mapped back to the measured grid: binning or cropping a diffraction
  window of ``m`` voxels makes the real-space voxel ``n / m`` times larger, so the predicted
  object is zoomed by ``n / m`` (linear interpolation of real and imaginary parts) and
  centred in an ``n``-voxel box;
* χ² of any object against the data after the least-squares amplitude scale (a network's
  scale is arbitrary).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from napari_ptycho.engines.config import BaseConfig

#: Folder with the shipped weight files and their JSON cards.
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
RESIZE_MODES = ("none", "bin", "crop")


@dataclass
class BraggNNConfig(BaseConfig):
    """Fields and checks shared by the network engines' configs (documented there)."""

    weights: str = ""
    resize: str = "none"
    support_threshold: float = 0.1
    shrinkwrap_every: int = 0

    def validate(self) -> None:
        """Refuse impossible values (ValueError naming the parameter).

        Unlike :class:`BaseConfig`, 0 iterations is allowed: the prediction alone.
        """
        if int(self.iterations) < 0:
            raise ValueError(f"iterations must be >= 0 (got {self.iterations})")
        if int(self.update_every) < 1:
            raise ValueError(f"update_every must be >= 1 (got {self.update_every})")
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {RESIZE_MODES} (got {self.resize!r})")
        if not 0 < self.support_threshold < 1:
            raise ValueError(f"support_threshold must be in (0, 1) (got "
                             f"{self.support_threshold})")
        if self.shrinkwrap_every < 0:
            raise ValueError(f"shrinkwrap_every must be >= 0 (got {self.shrinkwrap_every})")


@lru_cache(maxsize=4)
def load_network(path: str, kind: str, device: str) -> Any:
    """The network in ``path`` (``kind`` "autophasenn" or "cdinn") in eval mode."""
    import torch

    from napari_ptycho.nn.autophasenn import AutoPhaseNNSpec, build_network
    from napari_ptycho.nn.cdinn import CDINN, CDINNSpec

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"weights file {str(p)!r} does not exist; train one with "
                         f"`napari-ptycho train {kind}` or leave weights empty for the "
                         "shipped file")
    try:
        blob = torch.load(p, map_location=device, weights_only=True)
        if kind == "cdinn":
            model = CDINN(CDINNSpec(**blob["spec"]))
        else:
            model = build_network(AutoPhaseNNSpec(**blob["spec"]))
        model.load_state_dict(blob["state_dict"])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise ValueError(f"weights file {str(p)!r} is not a {kind} weight file: {exc}"
                         ) from exc
    return model.to(device).eval()


def weights_path(weights: str, kind: str) -> str:
    """The given path, or the shipped ``<kind>_32.pt`` when ``weights`` is empty."""
    return str(Path(weights).expanduser()) if weights else str(WEIGHTS_DIR / f"{kind}_32.pt")


@dataclass
class NetworkInput:
    """The volume as the network sees it, and how to map its output back."""

    amplitude: np.ndarray  # (s, s, s), maximum 1
    window: tuple[int, int, int]  # diffraction window (voxels of the measured grid)
    shape: tuple[int, int, int]  # measured shape


def network_input(intensity: np.ndarray, mask: np.ndarray | None, size: int, resize: str
                  ) -> NetworkInput:
    """Bring a measured volume to the network's ``size³`` input (see module doc)."""
    from napari_ptycho import bragg_processing as bp

    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {RESIZE_MODES} (got {resize!r})")
    shape = tuple(int(n) for n in intensity.shape)
    if shape == (size,) * 3:
        vol = np.where(mask, intensity, 0) if mask is not None else intensity
        window = shape
    elif resize == "none":
        raise ValueError(f"the network takes {size}³ volumes but the data is {shape}; set "
                         "resize='bin' (crop around the peak and bin) or resize='crop' "
                         f"(cut a {size}³ window around the peak)")
    else:
        factors = tuple(max(1, n // size) for n in shape) if resize == "bin" else (1, 1, 1)
        window = tuple(size * f for f in factors)
        vol, valid = bp.crop_around_peak(intensity, window, mask)
        vol, valid = bp.bin_volume(vol, factors, valid)
        vol = np.where(valid, vol, 0)
    amp = np.sqrt(np.clip(vol, 0, None)).astype(np.float32)
    peak = float(amp.max())
    if not peak > 0:
        raise ValueError("the network input window holds no counts")
    return NetworkInput(amp / peak, window, shape)


@lru_cache(maxsize=4)
def _runner(model: Any, device: str) -> Any:
    """The network frozen for inference (batch norm folded, oneDNN convolutions) on CPU,
    else the model itself: 2.1 vs 6.5 ms for the lean AutoPhaseNN, 20 vs 65 ms for the
    3D-CDI-NN at 32³ on one thread."""
    from napari_ptycho.nn.autophasenn_lean import inference_module

    return inference_module(model, model.spec.size, device)


def predict(model: Any, inp: NetworkInput, device: Any) -> np.ndarray:
    """Complex prediction on the network grid (amplitude maximum 1)."""
    import torch

    run = _runner(model, str(device))
    x = torch.from_numpy(inp.amplitude).to(device)[None, None]
    with torch.inference_mode():
        amp, phase = run(x)
        obj = torch.polar(amp[0], phase[0])
    return obj.cpu().numpy()


def to_measured_grid(obj: np.ndarray, inp: NetworkInput) -> np.ndarray:
    """Zoom the prediction by ``n / window`` per axis and centre it in the measured box."""
    zoom = tuple(n / w for n, w in zip(inp.shape, inp.window, strict=True))
    if all(abs(z - 1) < 1e-9 for z in zoom) and obj.shape == inp.shape:
        return obj
    if any(abs(z - 1) > 1e-9 for z in zoom):
        from scipy.ndimage import zoom as nd_zoom

        obj = (nd_zoom(obj.real, zoom, order=1) + 1j * nd_zoom(obj.imag, zoom, order=1)
               ).astype(np.complex64)
    out = np.zeros(inp.shape, np.complex64)
    src, dst = [], []
    for have, want in zip(obj.shape, inp.shape, strict=True):
        lo_src, lo_dst = max(0, (have - want) // 2), max(0, (want - have) // 2)
        k = min(have, want)
        src.append(slice(lo_src, lo_src + k))
        dst.append(slice(lo_dst, lo_dst + k))
    out[tuple(dst)] = obj[tuple(src)]
    return out


def scaled_chi2(obj: np.ndarray, intensity: np.ndarray, mask: np.ndarray | None = None
                ) -> tuple[float, float]:
    """(χ², scale): χ² of ``scale · obj`` with the least-squares amplitude scale.

    χ² = Σ(|F| − √I)² / Σ I over valid voxels, ``F = fftshift(fftn(obj, "ortho"))``.
    """
    f = np.abs(np.fft.fftshift(np.fft.fftn(obj, norm="ortho")))
    amp = np.sqrt(np.clip(intensity, 0, None))
    if mask is not None:
        f, amp = f[mask], amp[mask]
    denom = float(np.sum(f * f))
    if not denom > 0:
        return math.inf, 1.0
    scale = float(np.sum(f * amp)) / denom
    return float(np.sum((scale * f - amp) ** 2) / np.sum(amp * amp)), scale
