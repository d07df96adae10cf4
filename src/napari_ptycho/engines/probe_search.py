"""A probe start with the right defocus, found from the data (ours, not in the PtyINR paper).

The data-derived probe guess (:func:`napari_ptycho.engines.common.estimate_probe`) is the
square root of the mean diffraction pattern with a flat phase: the in-focus spot of the
lens. A focused beam measured out of focus has the same far-field amplitude (the pupil)
and a quadratic far-field phase, ``φ(q) = c · (q / R)²`` with ``R`` the pupil radius and
``c`` the phase at its edge (1.5 depths of focus give |c| ≈ 1.5π). When the flat-phase
guess is far from that, the blind fit of a 64² probe never leaves it (issue #8, see
docs/ptyinr.md). The mean pattern fixes the pupil even at a few photons per pattern, so
only ``c`` is unknown: :func:`search_defocus` scores each candidate ``c`` by the data
error left after a few object-only projections with that probe fixed, and keeps the best.
Only the measured data enter the choice.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from napari_ptycho.engines.common import Problem, abs2, modulus_projection


def pupil_radius(mean_intensity: torch.Tensor) -> float:
    """Radius (pixels) of the disc with the area of the mean pattern's bright region
    (> 10 % of its peak). An area, not a largest radius: one noisy outlier pixel far from
    the centre would set the latter."""
    area = float((mean_intensity > 0.1 * mean_intensity.max()).sum())
    return max(math.sqrt(area / math.pi), 1.0)


def defocused_probes(problem: Problem, edge_phases: Sequence[float]) -> torch.Tensor:
    """Probe guesses (K, h, w): the mean pattern's amplitude with the far-field phase
    ``c · (q / R)²`` for each ``c`` in ``edge_phases`` (plus the centring ramp of
    :func:`estimate_probe`), back-propagated, with the mean pattern's energy.

    Raises ValueError for a near-field (Fresnel) detector, where the pupil is not the
    far field of the probe.
    """
    det = problem.detector
    if det.near_field:
        raise ValueError("the defocus search needs far-field data (this detector is "
                         "near-field); use the flat-phase probe guess instead")
    amps, mask = problem.amplitudes, problem.mask
    mean_int = amps.square().mean(dim=0)
    valid_fraction = 1.0
    if mask is not None:
        mean_int = mean_int * mask
        valid_fraction = max(float(mask.float().mean()), 1e-6)
    H, W = det.detector_shape
    dev = amps.device
    fy = torch.fft.fftfreq(H, d=1.0 / H, dtype=torch.float64, device=dev)
    fx = torch.fft.fftfreq(W, d=1.0 / W, dtype=torch.float64, device=dev)
    q2 = fy[:, None] ** 2 + fx[None, :] ** 2  # native layout: DC at [0, 0]
    centre = -2 * math.pi * (fy[:, None] * (H // 2) / H + fx[None, :] * (W // 2) / W)
    radius = pupil_radius(mean_int)
    c = torch.as_tensor(list(edge_phases), dtype=torch.float64, device=dev)
    phase = centre[None] + c[:, None, None] * (q2 / radius**2)[None]
    field = mean_int.sqrt().to(torch.float64)[None] * torch.polar(torch.ones_like(phase),
                                                                  phase)
    probes = det.backward(field.to(torch.complex64))
    target = float(mean_int.sum()) / valid_fraction
    power = abs2(probes).sum(dim=(-2, -1), keepdim=True).clamp(min=1e-30)
    return probes * (target / power).sqrt()


def fixed_probe_error(problem: Problem, probe: torch.Tensor, iterations: int) -> float:
    """Held-out data error of a fixed ``probe`` (h, w).

    The object is fitted by ``iterations`` object-only projections (error reduction:
    modulus projection, then the least-squares object for the fixed probe) from a flat
    object to the even-numbered patterns, and the normalised error
    ``Σ(|Ψ| − √I)² / Σ I`` is taken on the odd-numbered ones. Held out, because at a few
    photons per pattern an object fitted to every pattern absorbs their noise under any
    probe, and the in-sample error then prefers the compact flat-phase guess (64² probe,
    α = 10: the wrong candidate won by 2 %).
    """
    win, det = problem.windows, problem.detector
    n = problem.n_patterns
    train = torch.arange(0, n, 2, device=problem.amplitudes.device)
    test = torch.arange(1, n, 2, device=problem.amplitudes.device)
    if len(test) == 0:
        raise ValueError("the defocus search needs at least 2 patterns")
    shifted = win.probes(probe[None])  # (B or 1, 1, h, w)

    def seen(idx: torch.Tensor) -> torch.Tensor:
        return shifted if shifted.shape[0] == 1 else shifted.index_select(0, idx)

    weight = abs2(seen(train)[:, 0]).expand(len(train), *win.probe_shape).contiguous()
    den = torch.zeros(problem.obj.shape, dtype=weight.dtype, device=weight.device)
    win.scatter_add(den, weight, train)
    # a floor at 1e-3 of the largest illumination keeps barely lit pixels bounded
    den = den + 1e-3 * den.max()
    obj = torch.ones_like(problem.obj)
    amps_train = problem.amplitudes.index_select(0, train)
    for _ in range(iterations):
        far = det.forward(seen(train) * win.gather(obj, train)[:, None])
        modulus_projection(far, amps_train, problem.mask)
        back = (seen(train).conj() * det.backward(far)).sum(dim=1)
        num = torch.zeros_like(problem.obj)
        win.scatter_add(num, back, train)
        obj = num / den
    far = det.forward(seen(test) * win.gather(obj, test)[:, None])
    amps_test = problem.amplitudes.index_select(0, test)
    err = modulus_projection(far, amps_test, problem.mask)
    total = amps_test.square()
    if problem.mask is not None:
        total = total * problem.mask
    return float(err) / max(float(total.sum()), 1e-30)


def search_defocus(problem: Problem, edge_phases: Sequence[float], iterations: int = 10
                   ) -> tuple[torch.Tensor, list[float], float]:
    """The defocused probe guess with the lowest fixed-probe data error.

    Parameters
    ----------
    problem : Problem
        From :func:`napari_ptycho.engines.common.prepare` (far-field data).
    edge_phases : sequence of float
        Candidate far-field phases at the pupil edge, radians (0 = the flat-phase guess).
    iterations : int
        Object-only projections per candidate (each about one full-batch FFT pair).

    Returns
    -------
    (probe (1, h, w), errors per candidate, chosen edge phase)
    """
    if not edge_phases:
        raise ValueError("search_defocus needs at least one candidate edge phase")
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1 (got {iterations})")
    probes = defocused_probes(problem, edge_phases)
    with torch.no_grad():
        errors = [fixed_probe_error(problem, p, iterations) for p in probes]
    best = min(range(len(errors)), key=lambda i: (errors[i], abs(edge_phases[i])))
    return probes[best][None], errors, float(edge_phases[best])
