"""PtyINR: hash-grid encoding, SIREN initialisation, training, stopping rules, dock."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napari_ptycho.engines import EngineError, make_config, stream
from napari_ptycho.engines.ptyinr import PtyINRConfig
from napari_ptycho.nn.hashgrid import HashGridEncoding
from napari_ptycho.nn.siren import Siren

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_scan():
    """40² smooth object, 16² Gaussian probe, 60 % overlap: a second per dozen steps."""
    from napari_ptycho.physics.simulate import simulate_ptycho

    return simulate_ptycho(object="large_features", object_size=40, probe_size=16, overlap=0.6,
                           photons=1e6, noise="none", probe="gaussian", seed=0)


def _tiny_config(**kw):
    base = {"iterations": 6, "update_every": 1, "render_every": 2, "device": "cpu",
            "object_width": 32, "object_layers": 1, "prefit_steps": 20}
    return PtyINRConfig(**{**base, **kw})


# ------------------------------------------------------------------------------ hash grid
def test_hash_encoding_is_continuous_across_cell_boundaries():
    enc = HashGridEncoding(levels=6, log2_table_size=10, base_resolution=4, growth=2.0,
                           init_scale=1.0, generator=torch.Generator().manual_seed(0))
    t = torch.linspace(0.0, 1.0, 20001, dtype=torch.float32)
    line = torch.stack([t, 0.3 + 0.4 * t], dim=-1)  # crosses many cells of every level
    with torch.no_grad():
        out = enc(line)
    step = float(t[1] - t[0])
    jumps = (out[1:] - out[:-1]).abs().max()
    # bilinear: |Δf| <= 2 · max|table| · N_max · |Δx| per level (no jump at cell edges)
    bound = 2 * float(enc.table.abs().max()) * max(enc.resolutions) * step * math.sqrt(2)
    assert float(jumps) <= bound
    assert float((out[-1] - out[0]).abs().max()) > 10 * bound  # it does vary


def test_table_size_respected_and_only_large_levels_hash():
    enc = HashGridEncoding()  # PtyINR: 16 levels, 2 features, 2^15 entries, N=16, b=1.5
    assert enc.levels == 16 and enc.output_dim == 32
    assert enc.resolutions[0] == 16 and enc.resolutions[-1] == math.floor(16 * 1.5 ** 15)
    for res, size, hashed in zip(enc.resolutions, enc.level_sizes, enc.hashed, strict=True):
        assert size <= 2 ** 15
        assert hashed == ((res + 1) ** 2 > 2 ** 15)
        assert size == (2 ** 15 if hashed else (res + 1) ** 2)
    assert any(enc.hashed) and not all(enc.hashed)
    assert enc.table.shape == (sum(enc.level_sizes), 2)
    pts = torch.rand(5000, 2, generator=torch.Generator().manual_seed(1))
    cell = torch.floor(pts[:, None, :] * enc._res[:, None]).long()
    rows = enc._vertex_index(cell[..., 0] + 1, cell[..., 1] + 1)
    offsets = enc._offsets
    sizes = torch.tensor(enc.level_sizes)
    assert torch.all(rows >= offsets) and torch.all(rows < offsets + sizes)


def test_gradients_reach_the_table_of_every_level():
    enc = HashGridEncoding(levels=8, log2_table_size=12)
    pts = torch.rand(256, 2, generator=torch.Generator().manual_seed(2))
    weights = torch.randn(enc.output_dim, generator=torch.Generator().manual_seed(3))
    (enc(pts) * weights).sum().backward()
    grad = enc.table.grad
    assert grad is not None and torch.isfinite(grad).all()
    for off, size in zip(enc._offsets.tolist(), enc.level_sizes, strict=True):
        assert grad[off:off + size].abs().sum() > 0
    assert (grad.abs().sum(dim=1) > 0).sum() < grad.shape[0]  # only touched entries


def test_dark_probe_can_still_brighten():
    """The amplitude head is linear: where the probe is zero the loss gradient still reaches
    it (a softplus head gave dP/dθ ∝ |P| there, so a probe started from a compact estimate
    never spread into its true footprint; issue #8)."""
    from napari_ptycho.nn.hashgrid import ProbeField

    torch.manual_seed(0)
    field = ProbeField(width=16, hidden_layers=1, levels=4, log2_table_size=10)
    with torch.no_grad():
        for head in (field.amplitude[-1], field.phase[-1]):
            head.weight.zero_()
            head.bias.zero_()
    coords = torch.rand(64, 2, generator=torch.Generator().manual_seed(1))
    probe, amp = field(coords)
    assert float(amp.abs().max()) == 0.0
    (probe - 1.0).abs().square().sum().backward()
    # d/db Σ|b e^{i0} − 1|² at b = 0 is −2 per point
    assert float(field.amplitude[-1].bias.grad) == pytest.approx(-2 * 64, rel=1e-5)


def test_hash_encoding_rejects_bad_arguments():
    with pytest.raises(ValueError, match="levels"):
        HashGridEncoding(levels=0)
    with pytest.raises(ValueError, match="growth"):
        HashGridEncoding(growth=float("nan"))
    with pytest.raises(ValueError, match="coords"):
        HashGridEncoding(levels=2)(torch.zeros(4, 3))


# -------------------------------------------------------------------------------- SIREN
def test_siren_initialisation_statistics_follow_sitzmann():
    net = Siren(2, 256, 3, 1, first_omega=30.0, hidden_omega=30.0,
                generator=torch.Generator().manual_seed(0))
    x = torch.rand(20000, 2, generator=torch.Generator().manual_seed(1))
    layers = net.activations(x)
    # first layer: the sine of a phase spread over many periods is arcsine-distributed
    first = np.sort(layers[0][1].flatten().numpy()[::7])
    cdf = 0.5 + np.arcsin(np.clip(first, -1, 1)) / np.pi
    ks = np.abs(cdf - (np.arange(1, first.size + 1) - 0.5) / first.size).max()
    assert ks < 0.03
    assert float(layers[0][1].var()) == pytest.approx(0.5, abs=0.02)
    for pre, act in layers[1:]:
        # hidden layers: pre-activations ~ N(0, 1) (Sitzmann et al., Theorem 1.8)
        assert float(pre.mean()).__abs__() < 0.05
        assert 0.85 < float(pre.std()) < 1.15
        z = np.sort(pre.flatten().numpy()[::13]) / float(pre.std())
        normal_cdf = 0.5 * (1 + np.vectorize(math.erf)(z / math.sqrt(2)))
        assert np.abs(normal_cdf - (np.arange(1, z.size + 1) - 0.5) / z.size).max() < 0.03
        s2 = float(pre.var())
        assert float(act.var()) == pytest.approx((1 - math.exp(-2 * s2)) / 2, abs=0.02)


def test_siren_rejects_bad_sizes():
    with pytest.raises(ValueError, match="hidden_features"):
        Siren(hidden_features=0)
    with pytest.raises(ValueError, match="omega"):
        Siren(first_omega=-1.0)


# ------------------------------------------------------------------------------ training
def test_one_training_step_lowers_the_loss(tiny_scan):
    from napari_ptycho.engines._ptyinr_fit import Fit

    fit = Fit(tiny_scan, _tiny_config(), None)
    before = fit.loss()
    fit.step(0)
    assert fit.loss() < before


def test_tiny_joint_fit_improves_object_and_probe(tiny_scan):
    from napari_ptycho.engines._ptyinr_fit import Fit
    from napari_ptycho.metrics import evaluate

    # the Gaussian probe estimate is close already: let the object settle for 10 steps
    cfg = _tiny_config(iterations=80, object_lr=3e-3, probe_lr=1e-3, probe_start=10)
    fit = Fit(tiny_scan, cfg, None)
    # score where the probe lit the object: dark pixels are not constrained by any data
    lit = np.zeros(tiny_scan.object_shape)
    power = np.abs(tiny_scan.truth_probe[0]) ** 2
    for r, c in np.floor(tiny_scan.positions).astype(int):
        lit[r:r + 16, c:c + 16] += power
    region = lit > 0.5 * lit.max()

    def errors() -> tuple[float, float]:
        obj, probe = fit.render()
        return (evaluate(obj, tiny_scan.truth_object, region=region, scale=True,
                         ramp=True)["nrmse"],
                evaluate(probe[0], tiny_scan.truth_probe[0], scale=True, ramp=True)["nrmse"])

    obj0, probe0 = errors()
    for k in range(80):
        fit.step(k)
    obj1, probe1 = errors()
    assert obj1 < 0.5 * obj0
    assert probe1 < 0.5 * probe0


def test_probe_peak_pixel_moves_once_the_anchor_is_released(tiny_scan):
    """P / max|P| has the same value either way, but only the released normalisation lets
    the brightest pixel itself change (through max() its value is pinned at 1)."""
    from napari_ptycho.engines._ptyinr_fit import Fit

    fit = Fit(tiny_scan, _tiny_config(), None)
    grads = {}
    for anchored in (True, False):
        probe, _ = fit.probe(anchored=anchored)
        peak = int(probe.abs().argmax())
        assert float(probe.abs().reshape(-1)[peak]) == pytest.approx(1.0, abs=1e-6)
        fit.probe_field.zero_grad(set_to_none=False)
        probe.abs().reshape(-1)[peak].backward()
        grads[anchored] = sum(float(q.grad.abs().sum()) for q in fit.probe_field.parameters())
    assert grads[True] < 1e-6 * grads[False]
    assert grads[False] > 0
    released, _ = fit.probe(anchored=False)
    anchored, _ = fit.probe(anchored=True)
    torch.testing.assert_close(released, anchored)


def test_poisson_deviance_is_zero_at_the_data_and_ignores_the_photon_scale():
    from napari_ptycho.engines._ptyinr_fit import _data_loss

    gen = torch.Generator().manual_seed(0)
    meas = torch.poisson(torch.full((2, 8, 8), 0.7), generator=gen).sqrt()  # many zeros
    assert float((meas == 0).float().mean()) > 0.2
    floor = 1e-3
    exact = _data_loss(torch.sqrt(meas.square() + floor ** 2), meas, None, 0.02, "poisson")
    assert 0 <= float(exact) < 1e-4
    # the best uniform model scale is the same whatever unit the counts are in
    scales = torch.linspace(0.5, 1.5, 101)
    model = torch.full_like(meas, 0.8)
    best = [float(scales[torch.stack([_data_loss(s * c * model, c * meas, None, 0.02,
                                                 "poisson") for s in scales]).argmin()])
            for c in (1.0, 10.0)]
    assert best[0] == pytest.approx(best[1])
    assert float(_data_loss(model, meas, None, 0.02, "poisson")) > 0


def test_poisson_loss_run_lowers_its_loss(tiny_scan):
    snaps = list(stream(tiny_scan, "ptyinr", config=_tiny_config(iterations=15,
                                                                 loss="poisson")))
    losses = snaps[-1].extras["loss_history"]
    assert np.isfinite(losses).all() and losses[-1] < 0.8 * losses[0]


@pytest.mark.parametrize("failure", ["nan", "diverge"])
def test_nan_or_divergence_stops_with_step_and_keeps_finite_snapshot(tiny_scan, monkeypatch,
                                                                      failure):
    from napari_ptycho.engines import _ptyinr_fit

    real = _ptyinr_fit._data_loss
    calls = {"n": 0}

    def broken(*args):
        calls["n"] += 1
        loss = real(*args)
        if calls["n"] >= 4:
            return loss * (float("nan") if failure == "nan" else 1e6)
        return loss

    monkeypatch.setattr(_ptyinr_fit, "_data_loss", broken)
    seen = []
    with pytest.raises(EngineError, match="step 4") as info:
        for snap in stream(tiny_scan, "ptyinr", config=_tiny_config(iterations=10)):
            seen.append(snap)
    assert ("non-finite" if failure == "nan" else "diverged") in str(info.value)
    assert "last finite snapshot is step 3" in str(info.value)
    assert [s.iteration for s in seen] == [1, 2, 3]
    assert all(np.isfinite(s.object).all() and np.isfinite(s.probe).all() for s in seen)


def test_warm_start_reuses_network_state_even_through_a_result_file(tiny_scan, tmp_path):
    from napari_ptycho.engines import reconstruct
    from napari_ptycho.engines._ptyinr_fit import Fit
    from napari_ptycho.io import load_result, save

    cfg = _tiny_config(iterations=4)
    first = reconstruct(tiny_scan, "ptyinr", config=cfg)
    assert first.extras["ptyinr_state"].dtype == np.float32
    path = save(first, tmp_path / "ptyinr.h5")
    loaded = load_result(path)
    for init in (first, loaded):
        fit = Fit(tiny_scan, cfg, init)
        obj, _ = fit.render()
        np.testing.assert_allclose(obj, first.object, atol=1e-5)
    more = reconstruct(tiny_scan, "ptyinr", config=cfg, init=loaded)
    assert more.iteration == 8 and len(more.errors) == 8
    # restarts would all restore the same networks: a warm start runs one
    again = reconstruct(tiny_scan, "ptyinr", init=loaded,
                        config=_tiny_config(iterations=4, starts=3, start_steps=2))
    assert again.iteration == 8 and again.extras["chosen_start"] is None
    assert len(more.extras["loss_history"]) == 8


def test_warm_start_from_plain_arrays_prefits_the_fields(tiny_scan):
    from napari_ptycho.engines import Snapshot
    from napari_ptycho.engines._ptyinr_fit import Fit

    yy, xx = np.mgrid[:40, :40] / 39.0
    target = (0.9 * np.exp(0.5j * (yy + xx))).astype(np.complex64)
    init = Snapshot(iteration=0, total=0, object=target, probe=tiny_scan.truth_probe)
    cold = Fit(tiny_scan, _tiny_config(prefit_steps=0), init).render()[0]
    warm = Fit(tiny_scan, _tiny_config(prefit_steps=150, object_lr=3e-3), init).render()[0]
    assert np.abs(warm - target).mean() < 0.5 * np.abs(cold - target).mean()


def test_exact_sampling_and_minibatches_run(tiny_scan):
    snaps = list(stream(tiny_scan, "ptyinr",
                        config=_tiny_config(sampling="exact", batch_size=7, iterations=3)))
    assert snaps[-1].done and snaps[-1].unit == "step"
    assert np.isfinite(snaps[-1].object).all() and len(snaps[-1].errors) == 3


@pytest.mark.parametrize(("field", "value"), [
    ("preset", "huge"), ("first_omega", 0.0), ("beta", -1.0), ("render_every", 0),
    ("object_lr", float("nan")), ("sampling", "random"), ("loss", "l2"),
    ("anchor_steps", -1), ("starts", 0), ("start_steps", -1), ("start_anchor_steps", -2)])
def test_bad_parameters_are_value_errors_naming_the_field(tiny_scan, field, value):
    with pytest.raises(ValueError, match=field):
        list(stream(tiny_scan, "ptyinr", config=_tiny_config(**{field: value})))


def test_restart_budget_must_be_shorter_than_the_run(tiny_scan):
    for kw in ({"start_steps": 6, "iterations": 6}, {"iterations": 1}):
        with pytest.raises(ValueError, match="start_steps"):
            list(stream(tiny_scan, "ptyinr", config=_tiny_config(starts=2, **kw)))
    assert _tiny_config(iterations=300).trial_steps() == 200


# ------------------------------------------------------------------------------ restarts
def test_restarts_keep_the_lowest_data_error_start_and_continue_it(tiny_scan):
    from napari_ptycho.engines import reconstruct
    from napari_ptycho.engines._ptyinr_fit import Fit

    cfg = _tiny_config(iterations=6, starts=3, start_steps=3, start_anchor_steps=0)
    snaps = list(stream(tiny_scan, "ptyinr", config=cfg))
    final = snaps[-1]
    assert [s.iteration for s in snaps] == list(range(1, 13)) and final.total == 12
    assert [s.extras["start"] for s in snaps[:9]] == [0] * 3 + [1] * 3 + [2] * 3
    assert len(final.errors) == 12 and len(final.extras["loss_history"]) == 12
    # each trial's error, recomputed independently from the measured data
    trial_errors = []
    for i in range(3):
        fit = Fit(tiny_scan, cfg.start_config(i), None)
        for k in range(3):
            fit.step(k)
        trial_errors.append(fit.data_error())
    np.testing.assert_allclose(final.extras["start_errors"], trial_errors, rtol=1e-5)
    chosen = final.extras["chosen_start"]
    assert chosen == int(np.argmin(trial_errors)) and final.extras["start"] == chosen
    assert cfg.start_config(1).anchor_steps == 0 and cfg.start_config(2).anchor_steps == 30
    # the kept start continues on its own schedule: same result as one uninterrupted run
    alone = reconstruct(tiny_scan, "ptyinr", config=cfg.start_config(chosen))
    np.testing.assert_allclose(final.object, alone.object, atol=1e-5)
    np.testing.assert_allclose(final.errors[-3:], alone.errors[-3:], rtol=1e-5)


def test_restarts_rank_by_data_error_and_skip_a_start_that_stops(tiny_scan, monkeypatch,
                                                                  tmp_path):
    from napari_ptycho.engines._ptyinr_fit import Fit
    from napari_ptycho.io import load_result, save

    ranked = {0: 0.5, 1: math.nan, 2: 0.1, 3: 0.3}  # seed → data error (1: stops)
    monkeypatch.setattr(Fit, "data_error", lambda self: ranked[self.config.seed])
    real_step = Fit.step

    def step(self, k):
        loss, err = real_step(self, k)
        return (math.nan, err) if self.config.seed == 1 else (loss, err)

    monkeypatch.setattr(Fit, "step", step)
    final = list(stream(tiny_scan, "ptyinr",
                        config=_tiny_config(iterations=4, starts=4, start_steps=2)))[-1]
    assert final.extras["chosen_start"] == 2 and final.extras["start_seed"] == 2
    assert final.extras["start_errors"] == [0.5, math.inf, 0.1, 0.3]
    # seed 1 stopped at its first step: no step of it is counted
    assert final.done and final.iteration == final.total == 8 and len(final.errors) == 8
    loaded = load_result(save(final, tmp_path / "restarts.h5"))  # ∞ survives the file
    assert loaded.extras["start_errors"] == [0.5, math.inf, 0.1, 0.3]
    assert loaded.extras["chosen_start"] == 2


def test_restarts_stream_during_the_trials_and_stop_when_closed(tiny_scan, monkeypatch):
    from napari_ptycho.engines._ptyinr_fit import Fit

    calls = []
    real_step = Fit.step
    monkeypatch.setattr(Fit, "step",
                        lambda self, k: calls.append(k) or real_step(self, k))
    gen = stream(tiny_scan, "ptyinr",
                 config=_tiny_config(iterations=6, starts=3, start_steps=3))
    first = [next(gen) for _ in range(2)]  # cancel (the dock's quit) inside trial 0
    gen.close()
    assert [s.extras["start"] for s in first] == [0, 0] and len(calls) == 2
    assert first[-1].extras["chosen_start"] is None and not first[-1].done


def test_restarts_all_stopping_is_an_engine_error(tiny_scan, monkeypatch):
    from napari_ptycho.engines._ptyinr_fit import Fit

    monkeypatch.setattr(Fit, "step", lambda self, k: (math.nan, 0.0))
    with pytest.raises(EngineError, match="all 2 starts"):
        list(stream(tiny_scan, "ptyinr",
                    config=_tiny_config(iterations=4, starts=2, start_steps=2)))


def test_known_probe_needs_a_probe_in_the_data(tiny_scan):
    from dataclasses import replace

    bare = replace(tiny_scan, probe=None)
    with pytest.raises(ValueError, match="probe"):
        list(stream(bare, "ptyinr", config=_tiny_config(probe="known")))


def test_registry_builds_the_config_by_name():
    cfg = make_config("ptyinr", first_omega=90.0, preset="paper")
    assert cfg.sizes() == (512, 3, 64, 2) and cfg.learning_rates() == (1e-4, 1e-3)


# ---------------------------------------------------------------------------------- dock
def test_dock_form_handles_the_config_and_streams_updates(make_napari_viewer, tiny_scan,
                                                          qtbot, tmp_path, monkeypatch):
    pytest.importorskip("napari")
    from napari_ptycho._widgets._layers import RESULT_KEY
    from napari_ptycho._widgets.reconstruct import ReconstructionWidget

    monkeypatch.setenv("NAPARI_PTYCHO_CONFIG_DIR", str(tmp_path / "config"))
    viewer = make_napari_viewer()
    layer = viewer.add_image(tiny_scan.intensities(), name="tiny",
                             metadata={"ptycho_data": tiny_scan})
    dock = ReconstructionWidget(viewer)
    viewer.window.add_dock_widget(dock)
    dock.method_box.setCurrentText("ptyinr")
    assert dock.form.container["preset"].choices == ("cpu", "paper")
    assert dock.form.container["sampling"].choices == ("grid", "exact")
    dock.form.set_values({"iterations": 40, "device": "cpu", "object_width": 32,
                          "object_layers": 1, "prefit_steps": 10, "render_every": 2})
    assert dock.form.config().first_omega == 30.0
    seen = []
    dock.hub.updated.connect(lambda ctx, snap: seen.append(snap.iteration))
    dock.start()
    assert dock.runner.wait(120)
    assert dock.status.text().startswith("Finished"), dock.status.text()
    assert len(seen) >= 3 and seen == sorted(seen)
    result = viewer.layers["tiny amplitude"].metadata[RESULT_KEY]
    assert result.method == "ptyinr" and result.done and result.iteration == 40
    assert layer.metadata["ptycho_data"] is tiny_scan
