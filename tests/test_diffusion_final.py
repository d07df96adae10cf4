"""Illumination-adaptive final denoising of the diffusion engine (issue #9)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napari_ptycho.engines import reconstruct
from napari_ptycho.engines._diffusion_final import (
    LADDER,
    adaptive_denoise,
    ladder_weights,
    noise_map,
    phase_noise_ratio,
)
from napari_ptycho.engines.common import prepare
from napari_ptycho.engines.diffusion import Diffusion, DiffusionConfig
from napari_ptycho.nn.ddpm import Schedule
from napari_ptycho.nn.unet import load_prior


def _ladder_sigma() -> np.ndarray:
    ab = Schedule.linear().alpha_bar
    return np.array([math.sqrt((1 - ab[t]) / ab[t]) for t in LADDER])


def test_ladder_weights_pick_the_matching_rung_and_interpolate_between_rungs():
    ls = _ladder_sigma()
    sigma = torch.tensor([[ls[2], math.sqrt(ls[2] * ls[3]), ls[0] / 10, 1e9, ls[0] / math.e]],
                         dtype=torch.float32)
    w = ladder_weights(sigma, ls)
    assert w.shape == (len(ls) + 1, 1, 5)
    torch.testing.assert_close(w.sum(dim=0), torch.ones_like(w[0]))
    # index 0 is the undenoised image, rung k is index k + 1
    assert float(w[3, 0, 0]) == pytest.approx(1.0)
    assert float(w[3, 0, 1]) == pytest.approx(0.5) and float(w[4, 0, 1]) == pytest.approx(0.5)
    assert float(w[0, 0, 2]) == pytest.approx(1.0)     # far below the first rung: as it is
    assert float(w[-1, 0, 3]) == pytest.approx(1.0)    # unlit: the prior's smooth guess
    assert float(w[0, 0, 4]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="increasing"):
        ladder_weights(sigma, ls[::-1])


def test_noise_map_scales_with_the_inverse_root_of_the_illumination():
    illum = torch.tensor([[4.0, 1.0, 0.0]])
    s = noise_map(illum, 0.2, reference=4.0)
    assert float(s[0, 0]) == pytest.approx(0.2) and float(s[0, 1]) == pytest.approx(0.4)
    assert float(s[0, 2]) > 1e4
    with pytest.raises(ValueError, match="reference"):
        noise_map(illum, 0.2, reference=0.0)
    # equal complex errors: amplitude range 0.2 over 0.9 mean amplitude vs phase range 1 rad
    assert phase_noise_ratio(DiffusionConfig()) == pytest.approx(0.2 / 0.9)


def test_adaptive_denoising_smooths_only_where_the_illumination_is_weak():
    model, patch, _ = load_prior()
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 64), torch.linspace(-1, 1, 64),
                            indexing="ij")
    clean = torch.stack([0.6 * torch.sin(2 * xx), 0.6 * torch.cos(3 * yy)]).unsqueeze(0)
    # left half lit like one probe peak (σ 0.05), right half 100x less (σ 0.5)
    illum = torch.ones(64, 64)
    illum[:, 32:] = 0.01
    sigma = noise_map(illum, 0.05, reference=1.0)
    noisy = (clean + sigma * torch.randn(clean.shape, generator=g)).clamp(-1, 1)
    out = adaptive_denoise(model, noisy, illum, 0.05, 1.0, 1.0, patch, 2, g,
                           lambda gen: [(0, 0)])
    err_in = (noisy - clean).square()
    err_out = (out - clean).square()
    right, left = (slice(None), slice(None), slice(None), slice(32, None)), \
        (slice(None), slice(None), slice(None), slice(None, 32))
    assert float(err_out[right].mean()) < 0.3 * float(err_in[right].mean())
    # the well-lit half is barely touched (no heavy smoothing of good data)
    assert float(err_out[left].mean()) < 1.5 * float(err_in[left].mean())
    assert float((out - noisy)[left].abs().mean()) < float((out - noisy)[right].abs().mean())


def test_engine_applies_adaptive_denoising_after_the_polish(diffusion_scan):
    kw = dict(iterations=4, time_travel=0, device="cpu", seed=2, dc_steps=1, polish=10)
    res = reconstruct(diffusion_scan, "diffusion", final_noise=0.15, final_draws=1, **kw)
    plain = reconstruct(diffusion_scan, "diffusion", **kw)
    assert not np.allclose(res.object, plain.object)
    amp = np.abs(res.object)
    assert amp.min() >= 0.8 - 1e-5 and amp.max() <= 1.0 + 1e-5
    problem = prepare(diffusion_scan, DiffusionConfig(device="cpu"))
    e = Diffusion.misfit(problem, torch.as_tensor(res.object))[1]
    assert e == pytest.approx(res.errors[-1], rel=1e-4)
    for bad in ({"final_noise": -0.1}, {"final_noise": float("nan")},
                {"final_noise": 0.1, "final_denoise": 50}):
        with pytest.raises(ValueError, match="final_noise"):
            reconstruct(diffusion_scan, "diffusion", **bad)


def _bench():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_diffusion.py"
    spec = importlib.util.spec_from_file_location("bench_diffusion", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_benchmark_bound_is_perfect_inside_the_scanned_box_only():
    from napari_ptycho.physics.simulate import simulate_ptycho

    bench = _bench()
    data = simulate_ptycho(object="grf", object_size=48, probe_size=16, overlap=0.2,
                           photons=1e5, photons_mode="max", seed=1, probe_fwhm=8)
    row = bench.bound_case(data)
    assert row["nrmse_scanned"] < 1e-6 and row["ssim_scanned"] == pytest.approx(1.0)
    # the windows leave a border, where the bound guesses a constant
    assert row["nrmse"] > 1e-3 and row["ssim_amplitude"] < 1.0
    assert row["error"] == row["truth_error"]
    assert "adaptive denoise σ₀ 0.16×4" in bench.label(
        "diffusion", {"final_noise": 0.16, "final_draws": 4, "polish": 200})
