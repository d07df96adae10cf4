"""AutoPhaseNN: a 3D CNN that maps a Bragg diffraction amplitude to a complex crystal
(Yao et al., npj Comput. Mater. 8, 124, 2022), trained without real-space labels.

Architecture (the paper's shape, sizes configurable):

* encoder: ``depth`` conv blocks, each two 3×3×3 convolutions with batch norm and leaky
  ReLU, separated by 2× max pooling, channels doubling from ``base_channels``;
* two decoders (amplitude, phase) of conv blocks with 2× upsampling, stopping when the
  output reaches the *object box* (``box = size // box_ratio``); amplitude ends in a
  sigmoid, phase in ``tanh × π``;
* the box is zero-padded to the diffraction size. Padding is the "square support": it is
  what makes the unsupervised problem well posed (oversampling ≥ ``box_ratio``).

Training is physics-only: the predicted object, restricted to the voxels above 10 % of its
maximum amplitude, is Fourier transformed and compared with the measured amplitude,
``loss = mean |√I_est − √I_meas|`` (:func:`fourier_amplitude_loss`). The paper works on
64³ diffraction and a 32³ box with 32 base channels; the shipped weights use 32³ input, a
16³ box and fewer channels so that they train on a small CPU.

The network input is the measured amplitude divided by its maximum (``normalise_input``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812


@dataclass
class AutoPhaseNNSpec:
    """Hyper-parameters that fix the network's shape (stored with the weights).

    Parameters
    ----------
    size : int
        Diffraction side in voxels (input is ``size³``).
    base_channels : int
        Channels of the first encoder block; they double at every level.
    depth : int
        Pooling steps in the encoder (bottleneck side ``size / 2**depth``).
    box_ratio : int
        The object box is ``size / box_ratio`` per axis (2 in the paper: 64³ → 32³).
    dropout : float
        Dropout after each decoder block (0 = off; 3D-CDI-NN uses 0.1).
    variant : str
        "plain": the paper's layout (full-resolution first block, decoders up to the box);
        "lean": :class:`~napari_ptycho.nn.autophasenn_lean.LeanAutoPhaseNN` (space-to-depth
        stem, grouped half-box decoders, depth-to-space head), about 1/10 of the FLOPs.
    """

    size: int = 32
    base_channels: int = 8
    depth: int = 3
    box_ratio: int = 2
    dropout: float = 0.0
    variant: str = "plain"

    def validate(self) -> None:
        """Refuse shapes the network cannot be built with (ValueError naming the field)."""
        if self.depth < 1:
            raise ValueError(f"depth must be >= 1 (got {self.depth})")
        if self.base_channels < 1:
            raise ValueError(f"base_channels must be >= 1 (got {self.base_channels})")
        if self.box_ratio not in (1, 2, 4):
            raise ValueError(f"box_ratio must be 1, 2 or 4 (got {self.box_ratio})")
        if self.size % (2 ** self.depth) or self.size < 2 ** self.depth * 2:
            raise ValueError(f"size must be a multiple of 2**depth = {2 ** self.depth} and at "
                             f"least twice it (got size={self.size})")
        if self.size // self.box_ratio < self.size // 2 ** self.depth:
            raise ValueError("box_ratio must not shrink the box below the bottleneck")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1) (got {self.dropout})")
        if self.variant not in ("plain", "lean"):
            raise ValueError(f"variant must be 'plain' or 'lean' (got {self.variant!r})")
        lean_box_ok = self.box >= 2 * (self.size // 2 ** self.depth)
        if self.variant == "lean" and (self.dropout or not lean_box_ok):
            raise ValueError("the lean variant needs dropout 0 and a box of at least twice "
                             "the bottleneck (box_ratio <= 2**depth / 2)")

    @property
    def box(self) -> int:
        """Object box side in voxels."""
        return self.size // self.box_ratio

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (stored inside the weight file and its card)."""
        return asdict(self)


class ConvBlock(nn.Sequential):
    """Two 3×3×3 convolutions, each followed by batch norm and leaky ReLU."""

    def __init__(self, c_in: int, c_out: int, dropout: float = 0.0) -> None:
        layers: list[nn.Module] = []
        for c in (c_in, c_out):
            layers += [nn.Conv3d(c, c_out, 3, padding=1, bias=False), nn.BatchNorm3d(c_out),
                       nn.LeakyReLU(0.01, inplace=True)]
        if dropout > 0:
            layers.append(nn.Dropout3d(dropout))
        super().__init__(*layers)


class Encoder(nn.Module):
    """Conv blocks with 2× max pooling between them; channels double at every level."""

    def __init__(self, base: int, depth: int) -> None:
        super().__init__()
        chans = [base * 2 ** i for i in range(depth + 1)]
        self.blocks = nn.ModuleList([ConvBlock(1, chans[0])] + [
            ConvBlock(a, b) for a, b in zip(chans[:-1], chans[1:], strict=True)])
        self.out_channels = chans[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks[0](x)
        for block in self.blocks[1:]:
            x = block(F.max_pool3d(x, 2))
        return x


class Decoder(nn.Module):
    """``steps`` × (2× upsampling + conv block), halving channels, then a 1×1×1 head."""

    def __init__(self, c_in: int, steps: int, dropout: float = 0.0) -> None:
        super().__init__()
        chans = [c_in // 2 ** i for i in range(steps + 1)]
        self.blocks = nn.ModuleList([ConvBlock(a, max(b, 1), dropout)
                                     for a, b in zip(chans[:-1], chans[1:], strict=True)])
        self.head = nn.Conv3d(max(chans[-1], 1), 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(F.interpolate(x, scale_factor=2, mode="trilinear", align_corners=False))
        return self.head(x)


class AutoPhaseNN(nn.Module):
    """Encoder + amplitude and phase decoders; the box is zero-padded to ``size³``.

    ``forward(x)`` takes ``(B, 1, n, n, n)`` normalised amplitudes and returns
    ``(amplitude, phase)``, each ``(B, n, n, n)``, zero outside the centred box.
    """

    def __init__(self, spec: AutoPhaseNNSpec | None = None) -> None:
        super().__init__()
        self.spec = spec or AutoPhaseNNSpec()
        self.spec.validate()
        s = self.spec
        self.encoder = Encoder(s.base_channels, s.depth)
        bottleneck = s.size // 2 ** s.depth
        steps = (s.box // bottleneck).bit_length() - 1
        self.amplitude = Decoder(self.encoder.out_channels, steps, s.dropout)
        self.phase = Decoder(self.encoder.out_channels, steps, s.dropout)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encoder(x)
        amp = torch.sigmoid(self.amplitude(z))[:, 0]
        phase = (torch.tanh(self.phase(z)) * torch.pi)[:, 0]
        pad = (self.spec.size - self.spec.box) // 2
        rest = self.spec.size - self.spec.box - pad
        widths = (pad, rest) * 3
        return F.pad(amp, widths), F.pad(phase, widths)


def build_network(spec: AutoPhaseNNSpec) -> nn.Module:
    """The network ``spec.variant`` names (plain :class:`AutoPhaseNN` or the lean one)."""
    if spec.variant == "lean":
        from napari_ptycho.nn.autophasenn_lean import LeanAutoPhaseNN

        return LeanAutoPhaseNN(spec)
    return AutoPhaseNN(spec)


def normalise_input(amplitude: torch.Tensor) -> torch.Tensor:
    """Divide each volume of a ``(B, n, n, n)`` amplitude batch by its maximum."""
    peak = amplitude.flatten(1).amax(1).clamp_min(1e-12)
    return amplitude / peak.view(-1, 1, 1, 1)


def thresholded(amp: torch.Tensor, threshold: float = 0.1) -> torch.Tensor:
    """``amp`` where it exceeds ``threshold`` × its per-volume maximum, else 0 (the
    training-time support; gradients flow through the kept voxels)."""
    peak = amp.flatten(1).amax(1).view(-1, 1, 1, 1)
    return amp * (amp >= threshold * peak).to(amp.dtype)


def far_field_amplitude(amp: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
    """``|fftshift(fftn(amp · e^{iφ}, norm="ortho"))|`` over the last three axes."""
    obj = torch.polar(amp, phase)
    dims = (-3, -2, -1)
    return torch.fft.fftshift(torch.fft.fftn(obj, dim=dims, norm="ortho"), dim=dims).abs()


def fourier_amplitude_loss(amp: torch.Tensor, phase: torch.Tensor, measured: torch.Tensor,
                           threshold: float = 0.1) -> torch.Tensor:
    """Mean ``|√I_est − √I_meas|`` with the estimate scaled to the measured energy.

    Parameters
    ----------
    amp, phase : Tensor (B, n, n, n)
        Network prediction.
    measured : Tensor (B, n, n, n)
        Measured amplitudes ``√I``, normalised to a maximum of 1 per volume.
    threshold : float
        Support threshold applied to ``amp`` before the transform (0 disables it).
    """
    if threshold > 0:
        amp = thresholded(amp, threshold)
    est = far_field_amplitude(amp, phase)
    # the network's amplitude scale is arbitrary: match energies (Parseval) per volume
    e_est = est.square().flatten(1).sum(1).clamp_min(1e-12)
    e_meas = measured.square().flatten(1).sum(1)
    est = est * torch.sqrt(e_meas / e_est).view(-1, 1, 1, 1)
    return (est - measured).abs().mean()
