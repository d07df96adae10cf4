"""Diffusion prior: DDPM maths, the shipped prior, DPS guidance, time travel, bad input."""

from __future__ import annotations

import argparse
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from napari_ptycho.engines import reconstruct, stream
from napari_ptycho.engines.common import prepare
from napari_ptycho.engines.diffusion import (
    Diffusion,
    DiffusionConfig,
    check_scan,
    denoise_tiled,
    plan_steps,
)
from napari_ptycho.nn.ddpm import Schedule, sample
from napari_ptycho.nn.unet import UNet, UNetConfig, load_prior


def test_linear_schedule_matches_ho_et_al():
    s = Schedule.linear()
    betas = np.linspace(1e-4, 0.02, 1000)
    assert len(s) == 1000
    np.testing.assert_allclose(s.betas, betas, rtol=1e-10)
    np.testing.assert_allclose(s.alpha_bar, np.cumprod(1 - betas), rtol=1e-10)
    assert s.alpha_bar_prev[0] == 1.0


@pytest.mark.parametrize("i", [1, 10, 500, 999])
def test_posterior_mean_and_variance_equal_the_gaussian_product(i):
    s = Schedule.linear()
    g = torch.Generator().manual_seed(i)
    x0 = torch.randn(2, 2, 4, 4, generator=g, dtype=torch.float64)
    xt = torch.randn(2, 2, 4, 4, generator=g, dtype=torch.float64)
    mean, var = s.posterior_mean_variance(x0, xt, i)
    # independent derivation: q(x_{i-1}|x_0) q(x_i|x_{i-1}) as a product of Gaussians
    ab_prev, alpha, beta = s.alpha_bar[i - 1], 1 - s.betas[i], s.betas[i]
    precision = 1 / (1 - ab_prev) + alpha / beta
    expected = (np.sqrt(ab_prev) * x0 / (1 - ab_prev) + np.sqrt(alpha) * xt / beta) / precision
    torch.testing.assert_close(mean, expected, rtol=1e-9, atol=1e-9)
    assert float(var) == pytest.approx(1 / precision, rel=1e-9)


def test_q_sample_and_x0_prediction_invert_each_other():
    s = Schedule.linear()
    x0 = torch.rand(3, 2, 8, 8, dtype=torch.float64) * 2 - 1
    noise = torch.randn_like(x0)
    t = torch.tensor([0, 400, 999])
    xt = s.q_sample(x0, t, noise)
    torch.testing.assert_close(s.predict_x0(xt, t, noise), x0)
    ab = torch.as_tensor(s.alpha_bar[[0, 400, 999]]).reshape(-1, 1, 1, 1)
    torch.testing.assert_close(xt, ab.sqrt() * x0 + (1 - ab).sqrt() * noise)


def test_respaced_schedule_keeps_alpha_bar_and_maps_to_network_timesteps():
    s = Schedule.linear()
    r = s.respaced(50)
    assert len(r) == 50 and r.model_t[0] == 0 and r.model_t[-1] == 999
    np.testing.assert_allclose(r.alpha_bar, s.alpha_bar[r.model_t])
    np.testing.assert_allclose(np.cumprod(1 - r.betas), r.alpha_bar, rtol=1e-10)
    with pytest.raises(ValueError, match="steps"):
        s.respaced(0)


def test_time_travel_renoises_to_the_marginal_of_the_later_timestep():
    s = Schedule.linear().respaced(50)
    i_from, j = 19, 10
    g = torch.Generator().manual_seed(0)
    x0 = torch.full((4000, 1, 2, 2), 0.5, dtype=torch.float64)
    x_from = s.q_sample(x0, i_from, torch.randn(x0.shape, generator=g, dtype=torch.float64))
    x_to = s.renoise(x_from, i_from, i_from + j, g)
    # q(x_{i+j} | x_0) = N(√ᾱ_{i+j} x_0, 1 − ᾱ_{i+j})
    ab = s.alpha_bar[i_from + j]
    assert float(x_to.mean()) == pytest.approx(np.sqrt(ab) * 0.5, abs=0.02)
    assert float(x_to.var()) == pytest.approx(1 - ab, rel=0.05)
    with pytest.raises(ValueError):
        s.renoise(x_from, 30, 20)


def test_plan_steps_travels_back_j_steps_and_returns():
    ops = plan_steps(6, time_travel=2, travel_every=2)
    # steps 5,4 → travel after i=4 (x_3 → x_5) → redo 5,4 → steps 3,2 → travel → ...
    assert ops[:5] == [("step", 5), ("step", 4), ("travel", 4), ("step", 5), ("step", 4)]
    assert ops[-1] == ("step", 0)
    assert [op for op in ops if op[0] == "travel"] == [("travel", 4), ("travel", 2)]
    assert plan_steps(4, 0, 1) == [("step", 3), ("step", 2), ("step", 1), ("step", 0)]


def test_unet_keeps_shape_and_refuses_sides_it_cannot_halve():
    net = UNet(UNetConfig(base=8, mults=(1, 2), attention_levels=(1,)))
    x = torch.randn(2, 2, 16, 16)
    assert net(x, torch.tensor([0, 999])).shape == x.shape
    with pytest.raises(ValueError, match="multiples"):
        net(torch.randn(1, 2, 15, 16), torch.tensor([3]))


def test_tiled_denoising_of_a_patch_sized_image_equals_the_network():
    net = UNet(UNetConfig(base=8, mults=(1, 2), attention_levels=(1,))).eval()
    x = torch.randn(1, 2, 16, 16)
    with torch.no_grad():
        tiled = denoise_tiled(net, x, 10, 16, [(0, 0)])
        direct = net(x, torch.tensor([10]))
        wide = denoise_tiled(net, torch.randn(1, 2, 40, 24), 10, 16, [(5, 3), (13, 11)])
    torch.testing.assert_close(tiled, direct)
    assert wide.shape == (1, 2, 40, 24) and torch.isfinite(wide).all()


def test_shipped_prior_loads_with_card_and_samples_two_channel_images_in_range():
    model, patch, card = load_prior()
    assert patch % 4 == 0 and card["channels"] == ["amplitude", "phase"]
    for key in ("command", "data", "steps", "minutes", "final_loss_ema100", "parameters"):
        assert card.get(key) is not None, key
    g = torch.Generator().manual_seed(0)
    x = sample(model, (1, 2, patch, patch), Schedule.linear().respaced(6), g)
    assert x.shape == (1, 2, patch, patch) and torch.isfinite(x).all()
    assert float(x.min()) >= -1 and float(x.max()) <= 1 and float(x.std()) > 0.05


def test_one_dps_step_lowers_the_data_misfit_of_the_clean_estimate(diffusion_scan):
    model, patch, _ = load_prior()
    cfg = DiffusionConfig(device="cpu")
    problem = prepare(diffusion_scan, cfg)
    s = Schedule.linear().respaced(20)
    i, offsets = 10, [(3, 5)]
    eng = Diffusion()
    x = s.q_sample(torch.zeros(1, 2, 32, 32), i, torch.randn(1, 2, 32, 32,
                   generator=torch.Generator().manual_seed(1)))

    def misfit(xi):
        xi = xi.detach().requires_grad_(True)
        eps = denoise_tiled(model, xi, int(s.model_t[i]), patch, offsets)
        l1, _ = eng.misfit(problem, eng.to_object(s.predict_x0(xi, i, eps).clamp(-1, 1), cfg))
        return l1, torch.autograd.grad(l1, xi)[0]

    before, grad = misfit(x)
    after, _ = misfit(x - 0.05 * grad)
    assert float(after) < float(before)


def test_engine_streams_timesteps_including_time_travel(diffusion_scan):
    # polish=0: the prior's own sample, which stays inside the configured ranges
    snaps = list(stream(diffusion_scan, "diffusion", iterations=6, time_travel=2, travel_every=2,
                        update_every=2, device="cpu", jacobian=False, polish=0))
    total = 6 + 2 * 2
    assert [s.iteration for s in snaps] == [2, 4, 6, 8, 10]
    assert all(s.total == total and s.unit == "timestep" for s in snaps)
    assert snaps[-1].done and len(snaps[-1].errors) == total
    amp = np.abs(snaps[-1].object)
    assert amp.min() >= 0.8 - 1e-5 and amp.max() <= 1.0 + 1e-5


def test_guidance_fits_the_data_better_than_the_unguided_prior(diffusion_scan):
    kw = dict(iterations=8, time_travel=0, device="cpu", jacobian=False, seed=2, dc_steps=0,
              polish=0)
    free = reconstruct(diffusion_scan, "diffusion", zeta=0.0, **kw)
    guided = reconstruct(diffusion_scan, "diffusion", zeta=0.3, **kw)
    assert guided.errors[-1] < 0.75 * free.errors[-1]


def test_data_consistency_steps_bring_the_estimate_near_the_noise_floor(diffusion_scan):
    # issue #9: plain DPS left x̂0 far from the data (40x the truth's misfit at 62 %);
    # illumination-normalised steps on x̂0 must cut that misfit several-fold
    kw = dict(iterations=8, time_travel=0, device="cpu", seed=2, polish=0)
    dps = reconstruct(diffusion_scan, "diffusion", zeta=0.2, dc_steps=0, **kw)
    dc = reconstruct(diffusion_scan, "diffusion", dc_steps=3, **kw)
    assert dc.errors[-1] < 0.3 * dps.errors[-1]


def test_final_polish_lowers_the_data_error_of_the_returned_object(diffusion_scan):
    kw = dict(iterations=4, time_travel=0, device="cpu", seed=2, dc_steps=1)
    raw = reconstruct(diffusion_scan, "diffusion", polish=0, **kw)
    polished = reconstruct(diffusion_scan, "diffusion", polish=30, **kw)
    assert polished.errors[-1] < 0.5 * raw.errors[-1]
    assert len(polished.errors) == len(raw.errors) == 4
    problem = prepare(diffusion_scan, DiffusionConfig(device="cpu"))
    e = Diffusion.misfit(problem, torch.as_tensor(polished.object))[1]
    assert e == pytest.approx(polished.errors[-1], rel=1e-4)


def test_annealed_data_consistency_weight_follows_the_diffusion_noise():
    s = Schedule.linear().respaced(50)
    off, on = DiffusionConfig(), DiffusionConfig(dc_noise=0.2)
    assert all(Diffusion.dc_weight(s, i, off) == 1.0 for i in (0, 25, 49))
    w = [Diffusion.dc_weight(s, i, on) for i in range(50)]
    assert all(b > a for a, b in zip(w, w[1:], strict=False))   # noisier x_i: more data
    assert w[0] < 0.01 and w[-1] > 0.99
    i = 10
    var = (1 - s.alpha_bar[i]) / s.alpha_bar[i]
    assert w[i] == pytest.approx(var / (var + 0.04))


def test_annealed_data_consistency_leaves_the_last_estimate_to_the_prior(diffusion_scan):
    kw = dict(iterations=8, time_travel=0, device="cpu", seed=2, polish=0, dc_steps=3)
    full = reconstruct(diffusion_scan, "diffusion", **kw)
    annealed = reconstruct(diffusion_scan, "diffusion", dc_noise=0.3, **kw)
    # late steps take (almost) no data step, so the last x̂0 fits the data less
    assert annealed.errors[-1] > 1.5 * full.errors[-1]
    assert annealed.errors[0] == pytest.approx(full.errors[0], rel=0.05)


def test_final_denoising_removes_noise_from_an_object_near_the_prior():
    model, patch, _ = load_prior()
    cfg = DiffusionConfig(final_denoise=20, final_draws=4)
    g = torch.Generator().manual_seed(0)
    # a smooth object inside the configured ranges, plus noise of σ̄_20 in image units
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 64), torch.linspace(-1, 1, 64),
                            indexing="ij")
    clean = torch.stack([0.6 * torch.sin(2 * xx), 0.6 * torch.cos(3 * yy)]).unsqueeze(0)
    ab = Schedule.linear().alpha_bar[20]
    noisy = clean + float(np.sqrt((1 - ab) / ab)) * torch.randn(clean.shape, generator=g)
    truth = Diffusion.to_object(clean, cfg)
    obj = Diffusion.to_object(noisy.clamp(-1, 1), cfg)
    out = Diffusion().final_denoise(model, obj, patch, cfg, g)
    assert out.shape == obj.shape
    assert float((out - truth).abs().square().mean()) < 0.5 * float(
        (obj - truth).abs().square().mean())
    amp = out.abs()
    assert float(amp.min()) >= 0.8 - 1e-5 and float(amp.max()) <= 1.0 + 1e-5


def test_final_denoising_runs_after_the_polish_and_reports_its_error(diffusion_scan):
    kw = dict(iterations=4, time_travel=0, device="cpu", seed=2, dc_steps=1, polish=10)
    res = reconstruct(diffusion_scan, "diffusion", final_denoise=30, final_draws=2, **kw)
    plain = reconstruct(diffusion_scan, "diffusion", **kw)
    assert not np.allclose(res.object, plain.object)
    problem = prepare(diffusion_scan, DiffusionConfig(device="cpu"))
    e = Diffusion.misfit(problem, torch.as_tensor(res.object))[1]
    assert e == pytest.approx(res.errors[-1], rel=1e-4)
    # a few AWF iterations after the denoising bring the data misfit back down
    refit = reconstruct(diffusion_scan, "diffusion", final_denoise=30, final_draws=2,
                        final_refit=5, **kw)
    assert refit.errors[-1] < 0.8 * res.errors[-1]


def test_several_samples_stream_in_turn_and_their_mean_is_returned(diffusion_scan):
    snaps = list(stream(diffusion_scan, "diffusion", iterations=3, time_travel=0, samples=2,
                        polish=0, update_every=2, device="cpu", seed=1))
    assert [s.iteration for s in snaps] == [2, 4, 6] and snaps[-1].total == 6
    assert len(snaps[-1].errors) == 6 and snaps[-1].object.shape == diffusion_scan.object_shape
    problem = prepare(diffusion_scan, DiffusionConfig(device="cpu"))
    e = Diffusion.misfit(problem, torch.as_tensor(snaps[-1].object))[1]
    assert e == pytest.approx(snaps[-1].errors[-1], rel=1e-4)


def test_posterior_mean_removes_each_sample_s_global_phase():
    g = torch.Generator().manual_seed(0)
    a = torch.complex(torch.rand(6, 6, generator=g), torch.rand(6, 6, generator=g))
    b = torch.complex(torch.rand(6, 6, generator=g), torch.rand(6, 6, generator=g))
    torch.testing.assert_close(Diffusion.posterior_mean([a, a * np.exp(2.0j)]), a,
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(Diffusion.posterior_mean([a, b * np.exp(2.0j)]),
                               Diffusion.posterior_mean([a, b]), atol=1e-5, rtol=0)


def test_object_to_image_mapping_round_trips_even_across_phase_wraps():
    cfg = DiffusionConfig(amplitude_min=0.5, amplitude_max=1.0, phase_min=-4.0, phase_max=4.0)
    x = torch.rand(1, 2, 8, 8, generator=torch.Generator().manual_seed(0)) * 1.8 - 0.9
    obj = Diffusion.to_object(x, cfg)
    torch.testing.assert_close(Diffusion.from_object(obj, x, cfg), x, atol=1e-5, rtol=0)
    # a small change of the object maps back to a small change of the image
    moved = Diffusion.from_object(obj * np.exp(0.01j), x, cfg)
    torch.testing.assert_close(moved[:, 1] - x[:, 1], torch.full_like(x[:, 1], 0.0025),
                               atol=1e-5, rtol=0)


def test_bad_scans_and_parameters_are_refused_before_starting(diffusion_scan):
    from napari_ptycho.physics.simulate import simulate_ptycho

    with pytest.raises(ValueError, match="zeta"):
        reconstruct(diffusion_scan, "diffusion", zeta=-1.0)
    with pytest.raises(ValueError, match="update_probe"):
        reconstruct(diffusion_scan, "diffusion", update_probe=True)
    for field, value in (("samples", 0), ("dc_steps", -1), ("polish", -2), ("dc_step", 0.0),
                         ("dc_step", 3.0), ("dc_alpha", 0.0), ("dc_alpha", float("nan")),
                         ("dc_noise", -0.1), ("final_denoise", 1000), ("final_draws", 0),
                         ("final_refit", -1)):
        with pytest.raises(ValueError, match=field):
            reconstruct(diffusion_scan, "diffusion", **{field: value})
    sparse = simulate_ptycho(object="grf", object_size=64, probe_size=16, photons=1e4,
                             probe_fwhm=6,
                             positions=np.array([[0, 0], [0, 40], [40, 0], [40, 40]]))
    with pytest.raises(ValueError, match="do not touch"):
        reconstruct(sparse, "diffusion", iterations=2)
    small = simulate_ptycho(object="grf", object_size=24, probe_size=16, overlap=0.3,
                            photons=1e4, probe_fwhm=6)
    with pytest.raises(ValueError, match="smaller than the prior's patch"):
        reconstruct(small, "diffusion", iterations=2)
    frame = SimpleNamespace(object_shape=(12, 12), probe_shape=(16, 16),
                            positions=np.zeros((1, 2)))
    with pytest.raises(ValueError, match="smaller than the probe"):
        check_scan(frame, 8)


def test_train_command_writes_a_loadable_prior_and_card(tmp_path):
    from napari_ptycho.training import diffusion as train

    rng = np.random.default_rng(0)
    img = (rng.random((48, 48)) * np.exp(1j * rng.random((48, 48)))).astype(np.complex64)
    np.save(tmp_path / "recon.npy", img)
    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    args = parser.parse_args([str(tmp_path / "recon.npy"), "-o", str(tmp_path / "prior"),
                              "--size", "16", "--base", "8", "--batch", "2", "--steps", "3",
                              "--synthetic-fraction", "0", "--threads", "1"])
    assert train.main(args) == 0
    card = json.loads((tmp_path / "prior" / "diffusion_prior.json").read_text())
    assert card["steps"] == 3 and card["patch_size"] == 16
    model, patch, _ = load_prior(str(tmp_path / "prior"))
    assert patch == 16 and model.config.base == 8
    with pytest.raises(ValueError, match="images"):
        train.load_training_image(tmp_path / "missing.tif")


def test_dock_streams_diffusion_timesteps_into_layers(make_napari_viewer, qtbot, diffusion_scan,
                                                      tmp_path, monkeypatch):
    pytest.importorskip("napari")
    from napari_ptycho._widgets.reconstruct import ReconstructionWidget
    from widget_helpers import add_scan

    monkeypatch.setenv("NAPARI_PTYCHO_CONFIG_DIR", str(tmp_path / "config"))
    viewer = make_napari_viewer()
    add_scan(viewer, diffusion_scan)
    dock = ReconstructionWidget(viewer)
    viewer.window.add_dock_widget(dock)
    dock.method_box.setCurrentText("diffusion")
    # a long run, cancelled once three updates arrived: independent of the machine's speed
    dock.form.set_values({"iterations": 1000, "time_travel": 0, "update_every": 1,
                          "device": "cpu"})
    seen = []
    dock.hub.updated.connect(lambda ctx, result: seen.append(result))
    dock.start()
    qtbot.waitUntil(lambda: len(seen) >= 3, timeout=120000)
    dock.cancel()
    assert dock.runner.wait(30)
    its = [r.iteration for r in seen]
    assert its == sorted(its) and its[-1] > its[0]
    assert all(r.unit == "timestep" and r.method == "diffusion" for r in seen)
    assert seen[-1].object.shape == diffusion_scan.object_shape


def test_train_command_continues_a_prior_with_its_architecture_and_step_count(tmp_path):
    from napari_ptycho.training import diffusion as train

    rng = np.random.default_rng(1)
    np.save(tmp_path / "recon.npy", (rng.random((48, 48)) * np.exp(1j * rng.random(
        (48, 48)))).astype(np.complex64))
    common = [str(tmp_path / "recon.npy"), "--size", "16", "--batch", "2",
              "--synthetic-fraction", "0", "--threads", "1"]

    def run(*extra: str) -> int:
        parser = argparse.ArgumentParser()
        train.add_arguments(parser)
        return train.main(parser.parse_args(common + list(extra)))

    assert run("-o", str(tmp_path / "a"), "--base", "8", "--steps", "3") == 0
    first, _, _ = load_prior(str(tmp_path / "a"))
    # --base is ignored: the architecture comes from the prior being continued
    assert run("-o", str(tmp_path / "b"), "--base", "16", "--steps", "2",
               "--init", str(tmp_path / "a")) == 0
    card = json.loads((tmp_path / "b" / "diffusion_prior.json").read_text())
    assert card["steps"] == 5 and card["init"]["steps"] == 3
    assert "--init" in card["command"] and card["unet"]["base"] == 8
    second, _, _ = load_prior(str(tmp_path / "b"))
    moved = [not torch.equal(p, q) for p, q in zip(first.state_dict().values(),
                                                   second.state_dict().values(), strict=True)]
    assert any(moved)
    with pytest.raises(ValueError, match="--init"):
        run("-o", str(tmp_path / "c"), "--size", "32", "--steps", "1",
            "--init", str(tmp_path / "a"))
