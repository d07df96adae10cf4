"""Accelerated Wirtinger flow: it fits the data, momentum helps, bad settings are refused."""

from __future__ import annotations

import numpy as np
import pytest

from napari_ptycho.engines import reconstruct
from napari_ptycho.metrics import evaluate


@pytest.fixture(scope="module")
def scan():
    from napari_ptycho.physics.simulate import simulate_ptycho

    return simulate_ptycho(object="grf", object_size=48, probe_size=16, overlap=0.5,
                           photons=1e6, photons_mode="max", seed=4, probe_fwhm=6)


def test_awf_lowers_the_data_error_and_approaches_the_truth(scan):
    res = reconstruct(scan, "awf", iterations=60, device="cpu")
    assert res.errors[-1] < 0.05 * res.errors[0]
    assert np.all(np.isfinite(res.object))
    start = evaluate(np.ones_like(res.object), scan.truth_object, register=False)["nrmse"]
    assert evaluate(res, scan, register=False)["nrmse"] < 0.5 * start


def test_restarted_momentum_is_monotone_and_beats_plain_wirtinger_flow(scan):
    fast = reconstruct(scan, "awf", iterations=30, device="cpu")
    plain = reconstruct(scan, "awf", iterations=30, device="cpu", momentum=False)
    assert fast.errors[-1] < plain.errors[-1]
    assert all(b <= a * (1 + 1e-6) for a, b in zip(fast.errors, fast.errors[1:], strict=False))


@pytest.mark.parametrize(("field", "value", "match"), [
    ("step_size", 3.0, "step_size"), ("step_size", 0.0, "step_size"),
    ("update_probe", True, "known probe"), ("position_refinement", True, "position")])
def test_bad_settings_are_refused_before_starting(scan, field, value, match):
    with pytest.raises(ValueError, match=match):
        reconstruct(scan, "awf", iterations=2, **{field: value})
