"""Denoising diffusion probabilistic model (Ho, Jain & Abbeel 2020) maths.

Timesteps are 0-based: index ``i`` of a :class:`Schedule` has cumulative signal fraction
``alpha_bar[i] = prod_{s <= i} (1 - beta_s)`` and ``alpha_bar[-1] = 1`` is the clean image.
A *respaced* schedule (Nichol & Dhariwal 2021) keeps a subset of the N = 1000 training
timesteps and recomputes its betas from the kept ``alpha_bar`` so that ancestral sampling
with fewer steps stays a valid Markov chain; ``model_t`` maps its indices back to the
network's training timesteps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

#: Number of training timesteps (Ho et al. 2020).
N_TIMESTEPS = 1000


class Schedule:
    """A (possibly respaced) DDPM noise schedule.

    Parameters
    ----------
    alpha_bar : array-like
        Cumulative products ᾱ_i, strictly decreasing in (0, 1].
    model_t : array-like of int, optional
        Network timestep of every index (default ``0..len-1``).
    """

    def __init__(self, alpha_bar: Sequence[float] | np.ndarray,
                 model_t: Sequence[int] | np.ndarray | None = None) -> None:
        ab = np.asarray(alpha_bar, dtype=np.float64)
        if ab.ndim != 1 or ab.size < 1 or not np.all(np.diff(ab) < 0) or ab[0] > 1 \
                or ab[-1] <= 0:
            raise ValueError("alpha_bar must be a strictly decreasing 1D sequence in (0, 1]")
        self.alpha_bar = ab
        self.alpha_bar_prev = np.concatenate([[1.0], ab[:-1]])
        self.alphas = ab / self.alpha_bar_prev
        self.betas = 1.0 - self.alphas
        self.model_t = (np.arange(ab.size) if model_t is None
                        else np.asarray(model_t, dtype=np.int64))
        # posterior q(x_{i-1} | x_i, x_0) coefficients (Ho et al. eq. 7)
        self.posterior_variance = self.betas * (1 - self.alpha_bar_prev) / (1 - ab)
        self.coef_x0 = self.betas * np.sqrt(self.alpha_bar_prev) / (1 - ab)
        self.coef_xt = (1 - self.alpha_bar_prev) * np.sqrt(self.alphas) / (1 - ab)

    def __len__(self) -> int:
        return int(self.alpha_bar.size)

    @classmethod
    def linear(cls, n: int = N_TIMESTEPS, beta_start: float = 1e-4, beta_end: float = 0.02
               ) -> Schedule:
        """The linear beta schedule of Ho et al. (β from 1e-4 to 0.02 over 1000 steps)."""
        if n < 1:
            raise ValueError(f"n must be >= 1 (got {n})")
        if not 0 < beta_start <= beta_end < 1:
            raise ValueError("need 0 < beta_start <= beta_end < 1")
        betas = np.linspace(beta_start, beta_end, n, dtype=np.float64)
        return cls(np.cumprod(1.0 - betas))

    def respaced(self, steps: int) -> Schedule:
        """A schedule of ``steps`` evenly strided timesteps of this one (always keeps the
        last, noisiest one)."""
        if not 1 <= int(steps) <= len(self):
            raise ValueError(f"steps must be in 1..{len(self)} (got {steps})")
        keep = np.unique(np.round(np.linspace(0, len(self) - 1, int(steps))).astype(int))
        return Schedule(self.alpha_bar[keep], self.model_t[keep])

    # -- forward process -----------------------------------------------------------------
    def q_sample(self, x0: torch.Tensor, i: torch.Tensor | int, noise: torch.Tensor
                 ) -> torch.Tensor:
        """Sample q(x_i | x_0) = N(√ᾱ_i x_0, (1 − ᾱ_i) I)."""
        ab = self._gather(self.alpha_bar, i, x0)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def renoise(self, x: torch.Tensor, i_from: int, i_to: int,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Sample q(x_{i_to} | x_{i_from}) for ``i_to >= i_from`` (time travel): the forward
        chain from a less noisy to a noisier index, ᾱ_to/ᾱ_from of the signal kept.

        ``i_from = -1`` means the clean image.
        """
        if not -1 <= i_from <= i_to < len(self):
            raise ValueError(f"need -1 <= i_from <= i_to < {len(self)} (got {i_from}, {i_to})")
        ab_from = 1.0 if i_from < 0 else self.alpha_bar[i_from]
        ratio = float(self.alpha_bar[i_to] / ab_from)
        noise = torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
        return np.sqrt(ratio) * x + np.sqrt(1 - ratio) * noise

    # -- reverse process -----------------------------------------------------------------
    def predict_x0(self, xt: torch.Tensor, i: torch.Tensor | int, eps: torch.Tensor
                   ) -> torch.Tensor:
        """Tweedie / DDPM estimate x̂_0 = (x_i − √(1 − ᾱ_i) ε) / √ᾱ_i."""
        ab = self._gather(self.alpha_bar, i, xt)
        return (xt - (1 - ab).sqrt() * eps) / ab.sqrt()

    def posterior_mean_variance(self, x0: torch.Tensor, xt: torch.Tensor,
                                i: torch.Tensor | int) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of q(x_{i-1} | x_i, x_0) (Ho et al. eqs. 6-7)."""
        mean = (self._gather(self.coef_x0, i, xt) * x0 + self._gather(self.coef_xt, i, xt) * xt)
        return mean, self._gather(self.posterior_variance, i, xt)

    def p_step(self, xt: torch.Tensor, i: int, x0: torch.Tensor,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """One ancestral step x_i → x_{i-1} given an estimate of x_0 (no noise at i = 0)."""
        mean, var = self.posterior_mean_variance(x0, xt, i)
        if i == 0:
            return mean
        noise = torch.randn(xt.shape, generator=generator).to(xt.device, xt.dtype)
        return mean + var.sqrt() * noise

    def _gather(self, table: np.ndarray, i: torch.Tensor | int, like: torch.Tensor
                ) -> torch.Tensor:
        """``table[i]`` as a tensor broadcastable against ``like`` (B, C, H, W)."""
        if isinstance(i, torch.Tensor):
            vals = torch.as_tensor(table, device=like.device)[i.to(like.device).long()]
            return vals.to(like.dtype).reshape(-1, *([1] * (like.ndim - 1)))
        return torch.tensor(float(table[int(i)]), dtype=like.dtype, device=like.device)


def training_loss(model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                  x0: torch.Tensor, schedule: Schedule,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Noise-prediction MSE ‖ε − ε_θ(√ᾱ x_0 + √(1 − ᾱ) ε, t)‖² at uniform random t."""
    t = torch.randint(0, len(schedule), (x0.shape[0],), generator=generator).to(x0.device)
    noise = torch.randn(x0.shape, generator=generator).to(x0.device, x0.dtype)
    xt = schedule.q_sample(x0, t, noise)
    model_t = torch.as_tensor(schedule.model_t, device=x0.device)[t]
    return torch.mean((model(xt, model_t) - noise) ** 2)


@torch.no_grad()
def sample(model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], shape: tuple[int, ...],
           schedule: Schedule, generator: torch.Generator | None = None,
           device: torch.device | str = "cpu", clip: bool = True) -> torch.Tensor:
    """Unconditional ancestral sampling from pure noise through every index of ``schedule``.

    ``clip`` keeps x̂_0 in [-1, 1] (the data range) at every step.
    """
    x = torch.randn(shape, generator=generator).to(device)
    for i in reversed(range(len(schedule))):
        t = torch.full((shape[0],), int(schedule.model_t[i]), device=device, dtype=torch.long)
        x0 = schedule.predict_x0(x, i, model(x, t))
        if clip:
            x0 = x0.clamp(-1, 1)
        x = schedule.p_step(x, i, x0, generator)
    return x.clamp(-1, 1) if clip else x
