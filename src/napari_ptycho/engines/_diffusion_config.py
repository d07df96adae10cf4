"""Parameters of the diffusion-prior engine (one dataclass: GUI form, CLI flags, cards).

The engine itself, and what each stage does, is in :mod:`napari_ptycho.engines.diffusion`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from napari_ptycho.engines.common import PtychoConfig


@dataclass
class DiffusionConfig(PtychoConfig):
    """DPS parameters (plus :class:`~napari_ptycho.engines.common.PtychoConfig`; the probe
    is known: ``update_probe`` and ``position_refinement`` must stay off).

    Parameters
    ----------
    iterations : int
        Strided denoising steps of the 1000-step schedule (time-travel steps come on top;
        the snapshots count both).
    zeta : float
        DPS guidance step ζ on the relative L1 amplitude misfit ``Σ|r| / Σ√I`` multiplied
        by the number of object pixels (so that ζ does not depend on counts or size);
        0 = no DPS gradient (the data-consistency steps below still act).
    dc_steps : int
        Illumination-normalised data-consistency steps applied to x̂_0 at every denoising
        step (0 = plain DPS as in Chung et al.).
    dc_step : float
        Step of those updates (1 = the full parallel rPIE step).
    dc_alpha : float
        rPIE regularisation α of their normalisation ``Σ|P|² + α max Σ|P|²`` (keeps weakly
        lit pixels from amplifying noise).
    polish : int
        Accelerated Wirtinger flow iterations on the final x̂_0 (0 = the prior's sample as
        it is; the output then stays inside the configured ranges).
    samples : int
        Independent posterior samples whose mean is returned (then polished). Where the
        data say little (weakly lit or unscanned pixels) one sample is a guess from the
        prior; the mean of several is the lower-error estimate. Costs ``samples`` times the
        denoising steps.
    time_travel : int
        Steps j re-noised and denoised again at each time travel (0 = off).
    travel_every : int
        A time travel after every this many steps.
    jacobian : bool
        Backpropagate the misfit through the denoiser (exact DPS) or stop at x̂_0
        (default: 3x cheaper, and as good or better with the shipped prior, see
        docs/diffusion.md).
    prior : str
        Prior file or folder; empty = the shipped prior.
    amplitude_min, amplitude_max, phase_min, phase_max : float
        Object ranges that [-1, 1] of the prior's channels map onto.
    tile_shifts : int
        Tilings (at different offsets) averaged per denoising step.
    dc_noise : float
        Noise level κ (in the prior's [-1, 1] units) of the data-consistency update:
        step i scales ``dc_step`` by σ_i² / (σ_i² + κ²), σ_i = √((1 − ᾱ_i)/ᾱ_i) the
        diffusion noise of x_i, so late steps, whose x̂_0 is already less noisy than the
        data, lean on the prior (the weighting of DiffPIR's data proximal step).
        0 = the full step at every timestep.
    final_denoise : int
        Network timestep t (of the 1000-step schedule) of a last Tweedie denoising of the
        returned object, after the polish: x̂_0(√ᾱ_t x + √(1 − ᾱ_t) ε), averaged over
        ``final_draws`` draws of ε and tile offsets. It removes what the polish fits of
        the noise, at the price of data consistency; 0 = off.
    final_draws : int
        Draws averaged by ``final_denoise``.
    final_noise : float
        σ₀ of the illumination-adaptive final denoising (instead of one timestep
        ``final_denoise``): each pixel is denoised at the timestep whose diffusion noise
        matches σ₀ / √(I(r)/I₁), I the summed probe intensity and I₁ one probe's peak,
        so weakly lit and unlit pixels lean on the prior and well-lit ones keep the data's
        detail (:mod:`~napari_ptycho.engines._diffusion_final`); σ₀ in the prior's
        amplitude units, ``final_draws`` draws per rung; 0 = off.
    final_refit : int
        AWF iterations after the final denoising: the denoised object no longer explains the
        data to the noise level (several times the truth's misfit); a few iterations bring
        it back there, at the cost of part of what the denoising gained (docs/diffusion.md).
    """

    iterations: int = 50
    update_probe: bool = False
    zeta: float = 0.0
    dc_steps: int = 3
    dc_step: float = 1.0
    dc_alpha: float = 0.1
    polish: int = 100
    samples: int = 1
    time_travel: int = 10
    travel_every: int = 10
    jacobian: bool = False
    prior: str = ""
    amplitude_min: float = 0.8
    amplitude_max: float = 1.0
    phase_min: float = 0.0
    phase_max: float = 1.0
    tile_shifts: int = 1
    dc_noise: float = 0.0
    final_denoise: int = 0
    final_draws: int = 4
    final_noise: float = 0.0
    final_refit: int = 0

    def validate(self) -> None:
        """Refuse impossible values (raises ValueError)."""
        super().validate()
        if not 1 <= int(self.iterations) <= 1000:
            raise ValueError(f"iterations must be in 1..1000 (got {self.iterations})")
        if not (math.isfinite(self.zeta) and self.zeta >= 0):
            raise ValueError(f"zeta must be a finite number >= 0 (got {self.zeta})")
        if not 1 <= int(self.samples) <= 64:
            raise ValueError(f"samples must be in 1..64 (got {self.samples})")
        if int(self.dc_steps) < 0 or int(self.polish) < 0:
            raise ValueError("dc_steps and polish must be >= 0 (got "
                             f"{self.dc_steps}, {self.polish})")
        if not (math.isfinite(self.dc_step) and 0 < self.dc_step <= 2):
            raise ValueError(f"dc_step must be in (0, 2] (got {self.dc_step})")
        if not (math.isfinite(self.dc_alpha) and self.dc_alpha > 0):
            raise ValueError(f"dc_alpha must be a positive number (got {self.dc_alpha})")
        if int(self.time_travel) < 0 or int(self.travel_every) < 1:
            raise ValueError("time_travel must be >= 0 and travel_every >= 1 (got "
                             f"{self.time_travel}, {self.travel_every})")
        if not 0 <= self.amplitude_min < self.amplitude_max:
            raise ValueError("need 0 <= amplitude_min < amplitude_max (got "
                             f"{self.amplitude_min}, {self.amplitude_max})")
        if not self.phase_min < self.phase_max:
            raise ValueError(f"need phase_min < phase_max (got {self.phase_min}, "
                             f"{self.phase_max})")
        if not (math.isfinite(self.dc_noise) and self.dc_noise >= 0):
            raise ValueError(f"dc_noise must be a finite number >= 0 (got {self.dc_noise})")
        if not 0 <= int(self.final_denoise) < 1000 or int(self.final_draws) < 1:
            raise ValueError("final_denoise must be in 0..999 and final_draws >= 1 (got "
                             f"{self.final_denoise}, {self.final_draws})")
        if not (math.isfinite(self.final_noise) and self.final_noise >= 0):
            raise ValueError(f"final_noise must be a finite number >= 0 (got {self.final_noise})")
        if self.final_noise > 0 and int(self.final_denoise) > 0:
            raise ValueError("final_noise (per-pixel timesteps) replaces final_denoise (one "
                             "timestep): set only one of them")
        if int(self.final_refit) < 0:
            raise ValueError(f"final_refit must be >= 0 (got {self.final_refit})")
        if int(self.tile_shifts) < 1:
            raise ValueError(f"tile_shifts must be >= 1 (got {self.tile_shifts})")
        if self.update_probe or self.position_refinement:
            raise ValueError("update_probe and position_refinement must be False: the "
                             "diffusion engine uses the known probe and positions")
