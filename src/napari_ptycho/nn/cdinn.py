"""3D-CDI-NN: supervised 3D CNN from Bragg amplitude to crystal shape and phase
(Chan et al., Appl. Phys. Rev. 8, 021407, 2021).

Encoder and two identical decoders on 32³: 32 → 16 → 8 → 4 and back to 32, conv blocks of
two 3×3×3 convolutions with batch norm and leaky ReLU, 10 % dropout in the decoders. The
shape decoder ends in a sigmoid (amplitude in [0, 1]), the phase decoder in ``tanh × π``.

Loss (:func:`cdinn_loss`): MAE between predicted and true amplitude, MAE of the wrapped
phase difference inside the true support, and the physics term: MAE between the input
magnitude and ``|FFT|`` of the recombined prediction ``amp · e^{iφ}`` (energy-matched,
both normalised to a peak of 1). Training is staged (``training/cdinn.py``): supervised
terms first, then the physics term switched on at a lower learning rate.

The building blocks are AutoPhaseNN's (:mod:`napari_ptycho.nn.autophasenn`); 3D-CDI-NN is
the same encoder–decoder with the box equal to the whole volume and dropout on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from napari_ptycho.nn.autophasenn import (
    AutoPhaseNN,
    AutoPhaseNNSpec,
    far_field_amplitude,
)


@dataclass
class CDINNSpec(AutoPhaseNNSpec):
    """3D-CDI-NN shape: 32³ in and out (box_ratio 1), depth 3, dropout 0.1.

    The paper's network starts at 32 channels; ``base_channels`` is smaller by default so
    that the shipped weights train on a CPU.
    """

    size: int = 32
    base_channels: int = 8
    depth: int = 3
    box_ratio: int = 1
    dropout: float = 0.1


class CDINN(AutoPhaseNN):
    """``forward(x) -> (amplitude, phase)``, both ``(B, n, n, n)`` over the whole box."""

    def __init__(self, spec: CDINNSpec | None = None) -> None:
        super().__init__(spec or CDINNSpec())
        # a crystal fills a few % of the box: start the shape output near empty
        # (sigmoid(-4) ≈ 0.02) instead of 0.5, else the supervised MAE spends hundreds of
        # steps just pulling the background down
        with torch.no_grad():
            self.amplitude.head.bias.fill_(-4.0)


@dataclass
class LossWeights:
    """Weights of the three 3D-CDI-NN loss terms."""

    shape: float = 1.0
    phase: float = 1.0
    physics: float = 0.0


def twin_labels(true_amp: torch.Tensor, true_phase: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """The labels of the conjugate-inverted twin ``conj(ρ(−r))`` on the DFT grid.

    ``ρ`` and its twin have the same diffraction amplitude, so a network that sees only
    the amplitude cannot tell which of the two the label is; ``−r`` on the grid is index
    ``(n − i) mod n`` (a flip and a roll by one), which keeps a centred crystal centred.
    """
    dims = (-3, -2, -1)
    ones = (1, 1, 1)
    amp = true_amp.flip(dims).roll(ones, dims)
    return amp, -true_phase.flip(dims).roll(ones, dims)


def _supervised_terms(amp: torch.Tensor, phase: torch.Tensor, true_amp: torch.Tensor,
                      true_phase: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-volume shape MAE and wrapped phase MAE inside the true support, ``(B,)`` each."""
    shape_term = (amp - true_amp).abs().flatten(1).mean(1)
    inside = (true_amp > 0.1).to(amp.dtype)
    # wrapped difference, so a phase of π − ε against −π + ε counts as 2ε
    dphi = torch.atan2(torch.sin(phase - true_phase), torch.cos(phase - true_phase))
    phase_term = ((dphi.abs() * inside).flatten(1).sum(1)
                  / inside.flatten(1).sum(1).clamp_min(1.0))
    return shape_term, phase_term


def cdinn_loss(amp: torch.Tensor, phase: torch.Tensor, true_amp: torch.Tensor,
               true_phase: torch.Tensor, measured: torch.Tensor,
               weights: LossWeights, twin_invariant: bool = False
               ) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum of shape, phase and physics MAE terms; also returns each term.

    Parameters
    ----------
    amp, phase : Tensor (B, n, n, n)
        Prediction.
    true_amp, true_phase : Tensor (B, n, n, n)
        Labels; ``true_amp`` normalised to a maximum of 1 per volume.
    measured : Tensor (B, n, n, n)
        The network input (measured amplitude, maximum 1).
    weights : LossWeights
    twin_invariant : bool
        Score each volume against the label or its twin (:func:`twin_labels`), whichever
        fits better. Without it the supervised phase target is ambiguous (the two differ
        by 0.1–0.5 rad on the simulated crystals) and the MAE-optimal answer is close to a
        flat phase.
    """
    shape_b, phase_b = _supervised_terms(amp, phase, true_amp, true_phase)
    if twin_invariant:
        s2, p2 = _supervised_terms(amp, phase, *twin_labels(true_amp, true_phase))
        use_twin = (weights.shape * s2 + weights.phase * p2
                    < weights.shape * shape_b + weights.phase * phase_b).detach()
        shape_b = torch.where(use_twin, s2, shape_b)
        phase_b = torch.where(use_twin, p2, phase_b)
    shape_term, phase_term = shape_b.mean(), phase_b.mean()
    total = weights.shape * shape_term + weights.phase * phase_term
    terms = {"shape": float(shape_term.detach()), "phase": float(phase_term.detach())}
    if weights.physics > 0:
        est = far_field_amplitude(amp, phase)
        e_est = est.square().flatten(1).sum(1).clamp_min(1e-12)
        e_meas = measured.square().flatten(1).sum(1)
        est = est * torch.sqrt(e_meas / e_est).view(-1, 1, 1, 1)
        physics = (est - measured).abs().mean()
        total = total + weights.physics * physics
        terms["physics"] = float(physics.detach())
    return total, terms
