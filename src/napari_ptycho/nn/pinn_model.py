"""PtychoPINN's encoder–decoder and its real-space overlap constraint (Hoidn et al. 2023).

A *sample* is a group of K overlapping diffraction patterns (amplitudes, N×N each, stacked
as K input channels). The network maps it to K complex object patches of n = N/2 pixels:
amplitude through a sigmoid (transmission in [0, 1]) and phase through ``π·tanh`` (bounded,
so the wrap never becomes a training target). The physics that turns patches back into
diffraction lives here too, so the engine, the benchmark and the tests share it:

* :func:`overlap_constraint` — eq. 1/2 of the paper: pad every patch to N×N, move it by
  ``r_k − µ`` into the group frame, average with the normalising sum of the moved supports,
  move the average back to each window. Translations are bilinear (sub-pixel allowed, and
  the interpolation weights stay positive, which a Fourier shift of a hard-edged support
  would not).
* :func:`stitch` — the same normalised average over the whole scan: the inference object.

Weights are saved as a plain ``state_dict`` (``.pt``) next to a JSON card with the
architecture, so :func:`load_model` can use ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

GAUGES = ("none", "group", "patch")


@dataclass
class PinnArch:
    """Architecture of a :class:`PinnNet` (saved in the model card).

    Parameters
    ----------
    n : int
        Diffraction pattern side N (a multiple of 8); patches are N/2.
    k : int
        Patterns per group (input channels).
    filters : int
        Channels of the first encoder stage (doubled at each of the three stages).
    gauge : str
        Which constant phase the network cannot choose: ``"group"`` (the mean phase logit
        of a group's K patches is removed), ``"patch"`` (of each patch) or ``"none"``.
        The diffraction loss is blind to a constant phase per group (per patch without the
        overlap constraint); Adam turns that flat direction into a random walk that ends
        in the bounded activation's saturation, where the phase wraps (docs/pinn.md).
    phase_limit : float
        Phase = ``phase_limit · tanh(logit)``. With π the two ends of the range are the
        same complex number, so a network can saturate half its pixels at +π and half at
        −π and look like a flat object of phase π (seen in training, docs/pinn.md); a
        limit below π keeps the ends apart.
    amplitude_max : float
        Amplitude = ``amplitude_max · sigmoid(logit)``. With 1 (the paper's range) a
        transmission of 1 — the background of every simulated object — sits on the
        sigmoid's asymptote, where its gradient vanishes; a little headroom (1.25) puts it
        at a finite logit (docs/pinn.md, "Why training is slow").
    """

    n: int = 64
    k: int = 4
    filters: int = 16
    gauge: str = "none"
    phase_limit: float = math.pi
    amplitude_max: float = 1.0

    def validate(self) -> None:
        """Refuse sizes the network cannot represent (raises ValueError)."""
        if int(self.n) < 16 or int(self.n) % 8:
            raise ValueError(f"n (pattern size) must be a multiple of 8, >= 16 (got {self.n})")
        if int(self.k) < 1:
            raise ValueError(f"k (group size) must be >= 1 (got {self.k})")
        if int(self.filters) < 1:
            raise ValueError(f"filters must be >= 1 (got {self.filters})")
        if not (math.isfinite(self.phase_limit) and 0 < self.phase_limit <= math.pi):
            raise ValueError(f"phase_limit must be in (0, pi] (got {self.phase_limit})")
        if not (math.isfinite(self.amplitude_max) and 0 < self.amplitude_max <= 4):
            raise ValueError(f"amplitude_max must be in (0, 4] (got {self.amplitude_max})")
        if self.gauge not in GAUGES:
            raise ValueError(f"gauge must be one of {GAUGES} (got {self.gauge!r})")

    @property
    def patch(self) -> int:
        """Side of the predicted object patches (N/2)."""
        return self.n // 2


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU(inplace=True))


class PinnNet(nn.Module):
    """Encoder (conv + ReLU, average pooling ×3) and decoder (upsampling ×2) to K patches.

    N → N/8 in the encoder and back up to N/2 in the decoder: the patch covers the centre
    of the probe window, where the probe is (PtychoPINN's assumption that the probe fits
    in half the window).
    """

    def __init__(self, arch: PinnArch | None = None) -> None:
        super().__init__()
        self.arch = arch or PinnArch()
        self.arch.validate()
        f, k = int(self.arch.filters), int(self.arch.k)
        self.encoder = nn.Sequential(_block(k, f), nn.AvgPool2d(2), _block(f, 2 * f),
                                     nn.AvgPool2d(2), _block(2 * f, 4 * f), nn.AvgPool2d(2))
        self.decoder = nn.Sequential(nn.Upsample(scale_factor=2), _block(4 * f, 2 * f),
                                     nn.Upsample(scale_factor=2), _block(2 * f, f))
        self.head = nn.Conv2d(f, 2 * k, 3, padding=1)
        # channels-last weights: oneDNN's convolutions then skip a layout reorder per
        # call (inference 1.6x, a training step 1.2x faster on one CPU thread)
        self.to(memory_format=torch.channels_last)

    def forward(self, amplitudes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Map (B, K, N, N) normalised amplitudes to amplitude and phase (B, K, N/2, N/2)."""
        # back to NCHW: channel slices of a channels-last tensor are strided, and the
        # activations below take a slow elementwise path (sigmoid + tanh 2.6x slower)
        out = self.head(self.decoder(self.encoder(amplitudes))).contiguous()
        k = int(self.arch.k)
        logits = out[:, k:]
        if self.arch.gauge == "group":
            logits = logits - logits.mean(dim=(1, 2, 3), keepdim=True)
        elif self.arch.gauge == "patch":
            logits = logits - logits.mean(dim=(2, 3), keepdim=True)
        amp = torch.sigmoid(out[:, :k])
        if self.arch.amplitude_max != 1:
            amp = float(self.arch.amplitude_max) * amp
        return amp, float(self.arch.phase_limit) * torch.tanh(logits)

    def patches(self, amplitudes: torch.Tensor) -> torch.Tensor:
        """Complex patches (B, K, N/2, N/2)."""
        amp, phase = self(amplitudes)
        return torch.polar(amp, phase)


def pad_center(x: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pad the last two axes (square, side n) to ``size``, content centred."""
    n = x.shape[-1]
    lo = (size - n) // 2
    return F.pad(x, (lo, size - n - lo, lo, size - n - lo))


def translate(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Move images by (possibly sub-pixel) shifts with bilinear interpolation, zeros outside.

    Parameters
    ----------
    x : Tensor, real or complex, shape (B, K, h, w)
    shift : Tensor, shape (B, K, 2)
        ``(dy, dx)``; positive moves content to larger indices (as ``torch.roll``).
    """
    b, k, h, w = x.shape
    complex_in = x.is_complex()
    planes = torch.view_as_real(x).permute(0, 1, 4, 2, 3) if complex_in else x[:, :, None]
    planes = planes.reshape(b * k, -1, h, w)
    s = shift.to(planes.dtype).reshape(b * k, 2)
    ys = torch.arange(h, dtype=planes.dtype, device=x.device)
    xs = torch.arange(w, dtype=planes.dtype, device=x.device)
    # sample the source at (y − dy, x − dx), in grid_sample's [−1, 1] pixel-centre units
    gy = (2 * (ys[None, :] - s[:, :1]) + 1) / h - 1
    gx = (2 * (xs[None, :] - s[:, 1:]) + 1) / w - 1
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)
    out = F.grid_sample(planes, grid, mode="bilinear", padding_mode="zeros",
                        align_corners=False)
    if complex_in:
        out = out.reshape(b, k, 2, h, w).permute(0, 1, 3, 4, 2).contiguous()
        return torch.view_as_complex(out)
    return out.reshape(b, k, h, w)


def overlap_constraint(patches: torch.Tensor, offsets: torch.Tensor, frame: int,
                       eps: float = 1e-3) -> torch.Tensor:
    """Eq. 1–2 of PtychoPINN: each window of the group's averaged object.

    Parameters
    ----------
    patches : Tensor, complex, shape (B, K, n, n)
        Predicted object patches, one per pattern of the group.
    offsets : Tensor, shape (B, K, 2)
        ``r_k − µ``: each window's position relative to the group reference, in pixels.
    frame : int
        Side N of the probe window (patches are zero-padded to it).
    eps : float
        Floor of the normalising sum (where no patch reaches, the object is zero).

    Returns
    -------
    Tensor, complex, shape (B, K, N, N)
        The object seen by window k after the overlap average.
    """
    padded = pad_center(patches, frame)
    support = pad_center(torch.ones_like(patches.real), frame)
    moved = translate(padded, offsets).sum(dim=1, keepdim=True)
    weight = translate(support, offsets).sum(dim=1, keepdim=True)
    merged = moved / weight.clamp(min=eps)
    k = patches.shape[1]
    return translate(merged.expand(-1, k, -1, -1), -offsets)


def probe_weight(probe: torch.Tensor | None, patch: int) -> torch.Tensor | None:
    """Stitching weight of a patch: the probe intensity over the patch, peak 1.

    A patch pixel is only as trustworthy as the light that reached it: where the probe is
    dark the loss never saw the object, and the network's guess there is unconstrained.
    Weighting by |P|² is the least-squares combination of the overlapping estimates (the
    normalisation of ePIE's object update); None (no probe) keeps the uniform weights of
    eq. 1.
    """
    if probe is None:
        return None
    n = probe.shape[-1]
    lo = (n - patch) // 2
    w = probe[..., lo:lo + patch, lo:lo + patch].abs().square().to(torch.float32)
    return w / w.max().clamp(min=1e-30)


def stitch(patches: torch.Tensor, positions: torch.Tensor, object_shape: tuple[int, int],
           frame: int, fill: complex = 1.0, out: tuple[torch.Tensor, torch.Tensor] | None
           = None, weight: torch.Tensor | None = None
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Average predicted patches into the whole object (the normalisation of eq. 1).

    Parameters
    ----------
    patches : Tensor, complex, shape (M, n, n)
        Patches; patch m is the centre of the probe window whose corner is positions[m].
    positions : Tensor, shape (M, 2)
        Window corners (row, col) in object pixels (sub-pixel allowed).
    object_shape : tuple of int
        Shape of the object frame.
    frame : int
        Probe window side N.
    fill : complex
        Value where no patch reaches.
    out : (sum, weight), optional
        Running sums to add to (for streaming tiles).
    weight : Tensor (n, n), optional
        Per-pixel weight of every patch (see :func:`probe_weight`); uniform when None.
        Pixels whose summed weight stays below 5 % of the peak get ``fill``.

    Returns
    -------
    object, sum, weight : Tensor
        The averaged object and the running sums (pass them back as ``out``).
    """
    m, n = patches.shape[0], patches.shape[-1]
    pos = positions.to(torch.float64) + (frame - n) // 2
    base = torch.floor(pos)
    frac = (pos - base).to(torch.float32)
    ones = torch.ones_like(patches.real)
    if weight is not None:
        ones = ones * weight.to(ones)
        patches = patches * ones
    if bool((frac != 0).any()):
        # sub-pixel positions: bilinear move inside one pixel of zero margin, so the move
        # never cuts the patch edge
        padded = F.pad(patches, (1, 1, 1, 1))[:, None]
        support = F.pad(ones, (1, 1, 1, 1))[:, None]
        moved = translate(padded, frac[:, None])[:, 0]
        weight = translate(support, frac[:, None])[:, 0]
        base = base - 1
    else:  # whole-pixel scans (grids): the move is the identity, skip it
        moved, weight = patches, ones
    side = moved.shape[-1]
    ar = torch.arange(side, device=patches.device)
    rows = base[:, 0, None].long() + ar
    cols = base[:, 1, None].long() + ar
    h, w = object_shape
    idx = (rows.clamp(0, h - 1)[:, :, None] * w + cols.clamp(0, w - 1)[:, None, :])
    in_r, in_c = (rows >= 0) & (rows < h), (cols >= 0) & (cols < w)
    if not (bool(in_r.all()) and bool(in_c.all())):
        # pixels off the frame add zero (to a clamped index) instead of being gathered out
        inside = (in_r[:, :, None] & in_c[:, None, :]).to(weight.dtype)
        moved, weight = moved * inside, weight * inside
    total, norm = out if out is not None else (
        torch.zeros(h * w, dtype=patches.dtype, device=patches.device),
        torch.zeros(h * w, dtype=torch.float32, device=patches.device))
    flat = idx.reshape(-1)
    total.index_add_(0, flat, moved.reshape(-1))
    norm.index_add_(0, flat, weight.expand(m, side, side).reshape(-1).to(norm.dtype))
    covered = norm > 0.05
    fill_t = torch.tensor(fill, dtype=patches.dtype, device=patches.device)
    obj = torch.where(covered, total / norm.clamp(min=0.05), fill_t)
    return obj.reshape(h, w), total, norm


def save_model(model: PinnNet, path: str | Path, card: dict[str, Any]) -> Path:
    """Write ``path`` (.pt state dict) and its JSON card (``path`` with ``.json``).

    The card holds ``arch`` (what :func:`load_model` needs) plus whatever ``card`` says
    (training command, data sizes, time, metrics). Both files are written to a temporary
    name first, so a cancelled run never leaves half a file.
    """
    path = Path(path).with_suffix(".pt")
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    tmp = path.with_suffix(".pt.tmp")
    torch.save(state, tmp)
    tmp.replace(path)
    meta = {**card, "arch": asdict(model.arch)}
    jtmp = path.with_suffix(".json.tmp")
    jtmp.write_text(json.dumps(meta, indent=2, default=float))
    jtmp.replace(path.with_suffix(".json"))
    return path


def load_model(path: str | Path, device: Any = None) -> tuple[PinnNet, dict[str, Any]]:
    """Load a model saved by :func:`save_model` (safely: ``weights_only=True``).

    Raises
    ------
    ValueError
        Missing files, or a card / state dict that does not describe a PinnNet.
    """
    path = Path(path)
    if path.is_dir():
        candidates = sorted(path.glob("*.pt"))
        if not candidates:
            raise ValueError(f"model_path {str(path)!r} holds no .pt weights")
        path = candidates[0]
    path = path.with_suffix(".pt")
    card_path = path.with_suffix(".json")
    if not path.is_file() or not card_path.is_file():
        raise ValueError(f"model_path {str(path)!r}: need both {path.name} and "
                         f"{card_path.name}")
    card = json.loads(card_path.read_text())
    try:
        arch = PinnArch(**card["arch"])
        model = PinnNet(arch)
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except (KeyError, TypeError, RuntimeError) as exc:
        raise ValueError(f"model_path {str(path)!r} is not a PtychoPINN model: {exc}") from None
    return model.to(device or "cpu").eval(), card
