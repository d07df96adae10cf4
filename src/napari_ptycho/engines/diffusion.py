"""Diffusion-prior ptychography: DPS with time travel (Cam, Deng, Kettimuthu, Cherukara &
Bicer; Chung et al. 2023 for DPS).

The object is a 2-channel image x (amplitude and phase, each mapped onto [-1, 1] through
the configured ranges) sampled from a trained DDPM prior. After every ancestral denoising
step the sample moves against the gradient of the data misfit of its clean estimate,

    x_{i-1} ← x'_{i-1} − ζ ∇_{x_i} n_px ‖√I − |F(P · S_j O(x̂_0(x_i)))|‖₁ / ‖√I‖₁,

through the shared ptychographic forward model (patch gather, known probe, far-field FFT).
``jacobian=False`` takes the gradient with respect to x̂_0 instead (no backpropagation
through the network: about 3x cheaper, the usual DPS approximation). Time travel
(Algorithm 1 of Cam et al.): every ``travel_every`` steps the current sample is re-noised
``time_travel`` steps back up the (strided) schedule, q(x_{i+j} | x_i), and denoised again
with guidance, which lets early guidance errors be corrected.

**Data consistency** (default, ``dc_steps`` > 0): the raw DPS gradient of a focused probe
is proportional to the local illumination, so with one global ζ it moves the pixels under
the probe centres and leaves the rest prior-only (x̂_0 of a 62 %-overlap scan ended 40x
above the truth's data misfit, with dots at the probe centres). Each step therefore also
moves x̂_0 towards the data with ``dc_steps`` illumination-normalised gradient steps in
object space (the parallel rPIE step ``O ← O − ∇/(Σ|P|² + α max Σ|P|²)``, as in the
decomposed/projection variants of DPS: DDS, DiffPIR) before the ancestral step uses it;
after the last step ``polish`` accelerated-Wirtinger-flow iterations refine the final x̂_0
against the data (the final data-consistency step many DPS variants add).

Objects larger than the prior's patch are denoised as tiles: every step the image is
reflect-padded by a random offset, cut into patch-sized tiles that go through the network
as one batch, and reassembled. The random offset moves the tile seams every step, so no
seam persists (``tile_shifts`` > 1 averages several offset tilings per step instead).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from napari_ptycho.engines._diffusion_config import DiffusionConfig
from napari_ptycho.engines.base import Snapshot, Timer
from napari_ptycho.engines.common import Problem, check_finite, prepare


def plan_steps(steps: int, time_travel: int, travel_every: int) -> list[tuple[str, int]]:
    """The sequence of operations over a strided schedule of ``steps`` indices.

    ``("step", i)`` denoises x_i → x_{i-1}; ``("travel", i)`` re-noises x_{i-1} back to
    x_{i-1+j}. A travel happens after every ``travel_every``-th step while the jump stays
    inside the schedule and never after the last (clean) step.
    """
    ops: list[tuple[str, int]] = []
    done = 0
    for i in reversed(range(steps)):
        ops.append(("step", i))
        done += 1
        if time_travel > 0 and done % travel_every == 0 and i > 0 \
                and i - 1 + time_travel <= steps - 1:
            ops.append(("travel", i))
            ops.extend(("step", k) for k in range(i - 1 + time_travel, i - 1, -1))
    return ops


def denoise_tiled(model: Any, x: torch.Tensor, t: int, patch: int, offsets: list[tuple[int,
                  int]]) -> torch.Tensor:
    """ε_θ(x, t) of an image (1, C, H, W) larger than the prior's ``patch``, averaged over
    tilings at the given (row, col) offsets in [0, patch)."""
    _, c, h, w = x.shape
    out = torch.zeros_like(x)
    for dy, dx in offsets:
        bottom, right = (-(h + dy)) % patch, (-(w + dx)) % patch
        xp = torch.nn.functional.pad(x, (dx, right, dy, bottom), mode="reflect")
        nh, nw = xp.shape[-2] // patch, xp.shape[-1] // patch
        tiles = xp.reshape(c, nh, patch, nw, patch).permute(1, 3, 0, 2, 4)
        tiles = tiles.reshape(nh * nw, c, patch, patch)
        eps = model(tiles, torch.full((nh * nw,), int(t), dtype=torch.long, device=x.device))
        eps = eps.reshape(nh, nw, c, patch, patch).permute(2, 0, 3, 1, 4)
        eps = eps.reshape(1, c, nh * patch, nw * patch)
        out = out + eps[:, :, dy:dy + h, dx:dx + w]
    return out / len(offsets)


def check_scan(data: Any, patch: int) -> None:
    """Refuse scans the method cannot handle, before any work (raises ValueError)."""
    oh, ow = (int(s) for s in data.object_shape)
    ph, pw = (int(s) for s in data.probe_shape)
    if oh < ph or ow < pw:
        raise ValueError(f"data: the object frame {(oh, ow)} is smaller than the probe "
                         f"{(ph, pw)}")
    if oh < patch or ow < patch:
        raise ValueError(f"data: the object frame {(oh, ow)} is smaller than the prior's "
                         f"patch ({patch}); use a prior trained on smaller patches")
    pos = np.asarray(data.positions, dtype=float)
    if len(pos) > 1:
        # Chebyshev distance to the nearest other window: beyond the window size the two
        # windows leave a gap no measurement constrains (works for any scan shape)
        d = np.abs(pos[:, None, :] - pos[None, :, :]) / np.array([ph, pw], dtype=float)
        cheb = d.max(axis=-1)
        np.fill_diagonal(cheb, np.inf)
        worst = float(cheb.min(axis=1).max())
        if worst > 1.0:
            raise ValueError(f"data: some probe windows do not touch any neighbour (nearest "
                             f"step {worst:.2f} window widths): the overlap is below what "
                             "the diffusion engine can tile; scan with windows that at "
                             "least touch")


class Diffusion:
    """Diffusion posterior sampling with time travel and a trained DDPM prior."""

    name = "diffusion"
    description = "Diffusion prior: DPS with time travel (Cam et al.)"
    dims = 2
    unit = "timestep"
    Config = DiffusionConfig

    def run(self, data: Any, config: DiffusionConfig, init: Snapshot | None = None
            ) -> Iterator[Snapshot]:
        """Yield x̂_0 as an object every ``update_every`` denoising steps and at the end.

        A warm start (``init``) supplies the probe only: sampling always starts from noise.
        """
        from napari_ptycho.nn.ddpm import Schedule
        from napari_ptycho.nn.unet import load_prior

        if not isinstance(config, DiffusionConfig):
            raise ValueError(f"config must be a DiffusionConfig (got {type(config).__name__})")
        config.validate()
        model, patch, _ = load_prior(config.prior or None)
        check_scan(data, patch)
        problem = prepare(data, config, init)
        model = model.to(problem.device)
        schedule = Schedule.linear().respaced(int(config.iterations))
        ops = plan_steps(len(schedule), int(config.time_travel), int(config.travel_every))
        per_sample = sum(op == "step" for op, _ in ops)
        total = per_sample * int(config.samples)
        gen = problem.generator
        h, w = problem.obj.shape
        timer = Timer()
        dc_norm = self.illumination_norm(problem, float(config.dc_alpha))
        errors: list[float] = []
        finished: list[torch.Tensor] = []
        done = 0
        for _ in range(int(config.samples)):
            x = torch.randn((1, 2, h, w), generator=gen).to(problem.device)
            for op, i in ops:
                if op == "travel":
                    x = schedule.renoise(x, i - 1, i - 1 + int(config.time_travel), gen)
                    continue
                offsets = self._offsets(patch, int(config.tile_shifts), gen)
                x, x0, err = self.guided_step(model, problem, schedule, x, i, patch, offsets,
                                              config, dc_norm)
                done += 1
                errors.append(err)
                problem.obj = self.to_object(x0, config)
                check_finite(problem, err, done)
                if done % config.update_every == 0 and done < total:
                    yield self._snapshot(problem, done, total, errors, timer(), schedule, i)
            finished.append(self.to_object(x.clamp(-1, 1), config))
        problem.obj = self.posterior_mean(finished)
        if int(config.polish) > 0 or len(finished) > 1:
            # the last error entry is that of the object returned
            errors[-1] = self.polish(problem, int(config.polish))
            check_finite(problem, errors[-1], done)
        if int(config.final_denoise) > 0 or float(config.final_noise) > 0:
            illum, peak = None, 0.0
            if float(config.final_noise) > 0:  # only the per-pixel timesteps need them
                illum = self.illumination_norm(problem, 0.0)
                peak = float(problem.windows.probes(problem.probe).abs().square()
                             .sum(dim=1).max())
            with torch.no_grad():
                problem.obj = self.final_denoise(model, problem.obj, patch, config, gen,
                                                 illum, peak)
                errors[-1] = self.misfit(problem, problem.obj)[1]
            if int(config.final_refit) > 0:
                errors[-1] = self.polish(problem, int(config.final_refit))
            check_finite(problem, errors[-1], done)
        yield self._snapshot(problem, total, total, errors, timer(), schedule, 0, done=True)

    @staticmethod
    def posterior_mean(objects: list[torch.Tensor]) -> torch.Tensor:
        """Mean of complex objects after aligning each one's global phase to the first's
        (the data cannot fix it, so samples may differ by one)."""
        ref = objects[0]
        aligned = [o * torch.exp(1j * torch.angle(torch.vdot(o.reshape(-1), ref.reshape(-1))))
                   for o in objects]
        return torch.stack(aligned).mean(dim=0)

    def final_denoise(self, model: Any, obj: torch.Tensor, patch: int,
                      config: DiffusionConfig, gen: torch.Generator,
                      illumination: torch.Tensor | None = None, reference: float = 0.0
                      ) -> torch.Tensor:
        """Tweedie estimate E[x_0 | x_t] of the object's image at network timestep
        ``config.final_denoise``, averaged over ``config.final_draws`` noise draws; with
        ``config.final_noise`` > 0 instead at a per-pixel timestep set by
        ``illumination`` (the summed probe intensity over the object) relative to
        ``reference`` (one probe's peak intensity), both required then.

        The object keeps the global phase its samples gave it (inside the configured
        range); values the polish moved outside the range are clipped.
        """
        from napari_ptycho.engines._diffusion_final import (
            adaptive_denoise,
            phase_noise_ratio,
            tweedie_mean,
        )

        x = self.from_object(obj, torch.zeros((1, 2, *obj.shape), device=obj.device), config)
        offsets = lambda g: self._offsets(patch, 1, g)  # noqa: E731  one tiling per draw
        if float(config.final_noise) > 0:
            if illumination is None or not reference > 0:
                raise ValueError("final_noise needs the illumination map and the probe's "
                                 "peak intensity")
            out = adaptive_denoise(model, x, illumination, float(config.final_noise),
                                   reference, phase_noise_ratio(config), patch,
                                   int(config.final_draws), gen, offsets)
        else:
            out = tweedie_mean(model, x, int(config.final_denoise), patch,
                               int(config.final_draws), gen, offsets)
        return self.to_object(out, config)

    @staticmethod
    def _offsets(patch: int, shifts: int, gen: torch.Generator) -> list[tuple[int, int]]:
        base = torch.randint(0, patch, (2,), generator=gen).tolist()
        return [((base[0] + k * patch // shifts) % patch, (base[1] + k * patch // shifts)
                 % patch) for k in range(shifts)]

    @staticmethod
    def to_object(x: torch.Tensor, config: DiffusionConfig) -> torch.Tensor:
        """Complex object (H, W) from a 2-channel image (1, 2, H, W) in [-1, 1]."""
        amp = config.amplitude_min + (config.amplitude_max - config.amplitude_min) * (
            x[0, 0] + 1) / 2
        pha = config.phase_min + (config.phase_max - config.phase_min) * (x[0, 1] + 1) / 2
        return torch.complex(amp * torch.cos(pha), amp * torch.sin(pha))

    @staticmethod
    def misfit(problem: Problem, obj: torch.Tensor) -> tuple[torch.Tensor, float]:
        """(relative L1 amplitude misfit × object pixels, normalised χ² error E of every
        engine)."""
        w = problem.windows
        waves = w.probes(problem.probe) * w.gather(obj).unsqueeze(1)
        fields = problem.detector.forward(waves)
        power = (fields.real.square() + fields.imag.square()).sum(dim=1)
        resid = (power + 1e-12).sqrt() - problem.amplitudes
        if problem.mask is not None:
            resid = resid * problem.mask
        # relative L1 per object pixel: keeps ζ O(1) whatever the counts and object size
        l1 = resid.abs().sum() / problem.amplitudes.sum() * obj.numel()
        return l1, float(resid.detach().square().sum()) / problem.total_intensity

    @staticmethod
    def from_object(obj: torch.Tensor, x: torch.Tensor, config: DiffusionConfig
                    ) -> torch.Tensor:
        """Inverse of :meth:`to_object` near the 2-channel image ``x`` (1, 2, H, W): the
        phase is unwrapped against ``x``'s, so ranges wider than 2π survive; clipped to
        [-1, 1]."""
        old = Diffusion.to_object(x, config)
        pha = (config.phase_min + (config.phase_max - config.phase_min) * (x[0, 1] + 1) / 2
               + torch.angle(obj * old.conj()))
        amp = 2 * (obj.abs() - config.amplitude_min) / (
            config.amplitude_max - config.amplitude_min) - 1
        pha = 2 * (pha - config.phase_min) / (config.phase_max - config.phase_min) - 1
        return torch.stack([amp, pha]).unsqueeze(0).clamp(-1, 1)

    @staticmethod
    def illumination_norm(problem: Problem, alpha: float) -> torch.Tensor:
        """rPIE normalisation ``Σ_j |P(r − r_j)|² + α max Σ_j |P|²`` over the object."""
        w = problem.windows
        power = w.probes(problem.probe).abs().square().sum(dim=1)
        illum = torch.zeros(w.object_shape, dtype=torch.float32, device=problem.device)
        w.scatter_add(illum, power.expand(problem.n_patterns, -1, -1).contiguous())
        return illum + alpha * illum.max()

    def data_consistency(self, problem: Problem, x0: torch.Tensor, config: DiffusionConfig,
                         norm: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
        """``dc_steps`` parallel rPIE-normalised gradient steps of x̂_0 towards the data,
        each of ``weight`` × ``dc_step``.

        A raw gradient scales with the local illumination; dividing by it makes one step
        size fit every pixel (and every count level), which the plain DPS step cannot.
        """
        from napari_ptycho.engines.awf import AWF

        obj = self.to_object(x0, config)
        for _ in range(int(config.dc_steps)):
            grad, _ = AWF.gradient(problem, obj)
            obj = obj - weight * float(config.dc_step) * grad / norm
        return self.from_object(obj, x0, config)

    @staticmethod
    def polish(problem: Problem, iterations: int) -> float:
        """Accelerated Wirtinger flow from ``problem.obj`` (in place); returns its error E."""
        from napari_ptycho.engines.awf import AWF, AWFConfig

        awf, cfg = AWF(), AWFConfig(iterations=iterations)
        awf.setup(problem, cfg)
        for done in range(iterations):
            awf.iterate(problem, cfg, done)
        return Diffusion.misfit(problem, problem.obj)[1]

    def guided_step(self, model: Any, problem: Problem, schedule: Any, x: torch.Tensor,
                    i: int, patch: int, offsets: list[tuple[int, int]],
                    config: DiffusionConfig, dc_norm: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor, float]:
        """One guided step x_i → x_{i-1}; returns (x_{i-1}, x̂_0 after the data-consistency
        steps, error E of that x̂_0)."""
        t = int(schedule.model_t[i])
        dps = float(config.zeta) > 0
        exact = dps and bool(config.jacobian)
        x = x.detach().requires_grad_(exact)
        with torch.set_grad_enabled(exact):
            eps = denoise_tiled(model, x, t, patch, offsets)
            x0 = schedule.predict_x0(x, i, eps).clamp(-1, 1)
        grad = None
        if dps:
            leaf = x if exact else x0.detach().requires_grad_(True)
            with torch.enable_grad():
                l1, _ = self.misfit(problem, self.to_object(x0 if exact else leaf, config))
                grad, = torch.autograd.grad(l1, leaf)
        x0 = x0.detach()
        with torch.no_grad():
            if int(config.dc_steps) > 0:
                if dc_norm is None:
                    dc_norm = self.illumination_norm(problem, float(config.dc_alpha))
                x0 = self.data_consistency(problem, x0, config, dc_norm,
                                           self.dc_weight(schedule, i, config))
            err = self.misfit(problem, self.to_object(x0, config))[1]
            x_prev = schedule.p_step(x.detach(), i, x0, problem.generator)
            if grad is not None:
                x_prev = x_prev - float(config.zeta) * grad
        return x_prev, x0, err

    @staticmethod
    def dc_weight(schedule: Any, i: int, config: DiffusionConfig) -> float:
        """σ_i² / (σ_i² + κ²) with σ_i² = (1 − ᾱ_i)/ᾱ_i and κ = ``dc_noise`` (1 if κ = 0)."""
        kappa = float(config.dc_noise)
        if kappa <= 0:
            return 1.0
        ab = float(schedule.alpha_bar[i])
        var = (1 - ab) / ab
        return var / (var + kappa * kappa)

    def _snapshot(self, problem: Problem, it: int, total: int, errors: list[float],
                  elapsed: float, schedule: Any, i: int, done: bool = False) -> Snapshot:
        snap = problem.snapshot(it, total, errors, elapsed, self.name, done=done)
        snap.unit = self.unit
        snap.extras["diffusion_timestep"] = int(schedule.model_t[i])
        return snap
