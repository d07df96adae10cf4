"""The defocus search for a probe start (engines.probe_search) and PtyINR's probe_guess."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_ptycho.engines import stream
from napari_ptycho.engines.common import PtychoConfig, estimate_probe, prepare
from napari_ptycho.engines.probe_search import (
    defocused_probes,
    fixed_probe_error,
    pupil_radius,
    search_defocus,
)
from napari_ptycho.engines.ptyinr import PtyINRConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def focused_scan():
    """64² Siemens star, 32² focused probe 1.5 depths of focus out of focus (far-field
    edge phase about −1.6π), 50 % overlap, noise-free: 49 patterns."""
    from napari_ptycho.physics.simulate import simulate_ptycho

    return simulate_ptycho(object="siemens", object_size=64, probe_size=32, overlap=0.5,
                           photons=1e6, noise="none", probe="focused", seed=0)


def _problem(data):
    return prepare(data, PtychoConfig(iterations=1, device="cpu", probe_init="data"))


def _match(probe: np.ndarray, truth: np.ndarray) -> float:
    """|<p, t>| / (|p| |t|): 1 for the truth up to a global phase and scale."""
    return float(abs(np.vdot(probe, truth)) / (np.linalg.norm(probe) * np.linalg.norm(truth)))


def test_zero_edge_phase_is_the_flat_phase_guess(focused_scan):
    p = _problem(focused_scan)
    flat = estimate_probe(p.amplitudes, p.detector, p.mask)[0]
    probes = defocused_probes(p, [0.0, -4.0])
    assert probes.shape == (2, *flat.shape)
    np.testing.assert_allclose(probes[0].numpy(), flat.numpy(), atol=1e-4 * float(flat.abs().max()))
    # same energy (the mean pattern's), different field
    assert float(probes[1].abs().square().sum()) == pytest.approx(
        float(flat.abs().square().sum()), rel=1e-4)
    assert _match(probes[1].numpy(), flat.numpy()) < 0.9


def test_pupil_radius_of_a_disc_ignores_an_outlier():
    import torch

    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    disc = (((yy - 32) ** 2 + (xx - 32) ** 2) <= 10.0 ** 2).float()
    disc[0, 0] = 1.0  # one bright pixel far out: a largest radius would say 45
    assert pupil_radius(disc) == pytest.approx(10.0, abs=0.3)


def test_search_finds_the_defocus_and_a_better_probe(focused_scan):
    p = _problem(focused_scan)
    phases = [k * math.pi / 4 for k in range(-12, 13)]
    probe, errors, chosen = search_defocus(p, phases, iterations=10)
    assert len(errors) == len(phases) and all(math.isfinite(e) for e in errors)
    assert errors[phases.index(chosen)] == min(errors)
    # the truth is −1.6π; the flat guess (0) must lose
    assert -2.25 * math.pi <= chosen <= -1.0 * math.pi
    truth = focused_scan.truth_probe[0]
    assert _match(probe[0].numpy(), truth) > _match(p.probe[0].numpy(), truth) + 0.2


def test_held_out_error_is_lower_for_the_true_probe(focused_scan):
    import torch

    p = _problem(focused_scan)
    truth = torch.as_tensor(focused_scan.truth_probe[0])
    assert fixed_probe_error(p, truth, 10) < 0.5 * fixed_probe_error(p, p.probe[0], 10)


def test_search_refuses_bad_arguments(focused_scan):
    p = _problem(focused_scan)
    with pytest.raises(ValueError, match="at least one"):
        search_defocus(p, [], 10)
    with pytest.raises(ValueError, match="iterations"):
        search_defocus(p, [0.0], 0)


def test_config_checks_and_candidates():
    cfg = PtyINRConfig(defocus_max=2.0, defocus_candidates=5)
    assert cfg.defocus_phases() == pytest.approx([-2.0, -1.0, 0.0, 1.0, 2.0])
    assert PtyINRConfig(defocus_candidates=1).defocus_phases() == [0.0]
    assert len(PtyINRConfig().defocus_phases()) == 25
    for bad in ({"probe_guess": "random"}, {"defocus_candidates": 0},
                {"defocus_iterations": 0}, {"defocus_max": -1.0}):
        with pytest.raises(ValueError):
            PtyINRConfig(**bad).validate()


def test_ptyinr_starts_from_the_searched_probe(focused_scan):
    base = {"iterations": 2, "update_every": 1, "render_every": 1, "device": "cpu",
            "object_width": 16, "object_layers": 1, "prefit_steps": 30,
            "defocus_candidates": 9, "defocus_max": 2 * math.pi}
    last = list(stream(focused_scan, "ptyinr", **base))[-1]  # "defocus" is the default
    assert last.extras["defocus_edge_phase"] in last.extras["defocus_phases"]
    assert len(last.extras["defocus_errors"]) == 9
    flat = list(stream(focused_scan, "ptyinr", probe_guess="flat", **base))[-1]
    assert "defocus_edge_phase" not in flat.extras
    truth = focused_scan.truth_probe[0]
    assert _match(last.probe[0], truth) > _match(flat.probe[0], truth) + 0.2
    known = list(stream(focused_scan, "ptyinr", probe="known", probe_guess="defocus",
                        **base))[-1]
    assert "defocus_edge_phase" not in known.extras  # nothing to search for


def test_near_field_keeps_the_flat_guess():
    from napari_ptycho.physics.simulate import simulate_ptycho

    data = simulate_ptycho(object="large_features", object_size=40, probe_size=16,
                           overlap=0.6, photons=1e6, noise="none", probe="gaussian", seed=0,
                           near_field_distance=2e-4)
    with pytest.raises(ValueError, match="far-field"):
        defocused_probes(_problem(data), [0.0])
    last = list(stream(data, "ptyinr", iterations=1, update_every=1, device="cpu",
                       object_width=16, object_layers=1, prefit_steps=5))[-1]
    assert "defocus_edge_phase" not in last.extras and np.isfinite(last.object).all()


def test_restarts_search_the_probe_once(focused_scan, monkeypatch):
    import napari_ptycho.engines.probe_search as ps

    calls = []

    def counted(*args, **kwargs):
        calls.append(1)
        return search_defocus(*args, **kwargs)

    monkeypatch.setattr(ps, "search_defocus", counted)
    last = list(stream(focused_scan, "ptyinr", iterations=4, starts=3, start_steps=2,
                       update_every=1, device="cpu", object_width=16, object_layers=1,
                       prefit_steps=5, defocus_candidates=5))[-1]
    assert len(calls) == 1  # the search reads the data only: one per run, not per start
    assert last.extras["start_errors"] and len(last.extras["start_errors"]) == 3
    assert last.extras["defocus_edge_phase"] in last.extras["defocus_phases"]
