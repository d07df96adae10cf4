"""``napari-ptycho evaluate``: JSON round trip, table output, region choice, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_ptycho import cli
from napari_ptycho.metrics import apply_shift, evaluate


def smooth_object(n: int = 48, seed: int = 0) -> np.ndarray:
    """Band-limited complex object (exact under Fourier shifts)."""
    rng = np.random.default_rng(seed)
    fy, fx = np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n), indexing="ij")
    inside = np.hypot(fy, fx) < 0.2
    spec = (rng.normal(size=(n, n)) + 1j * rng.normal(size=(n, n))) * inside
    obj = np.fft.ifft2(spec)
    return (0.8 + 0.5 * obj / np.abs(obj).max()).astype(np.complex64)


@pytest.fixture()
def npy_pair(tmp_path):
    truth = smooth_object()
    rec = (apply_shift(truth, (1.4, -2.0)) * np.exp(0.9j)).astype(np.complex64)
    np.save(tmp_path / "truth.npy", truth)
    np.save(tmp_path / "rec.npy", rec)
    return tmp_path / "rec.npy", tmp_path / "truth.npy", rec, truth


def run(argv, capsys):
    rc = cli.main(["evaluate", *map(str, argv)])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_json_output_round_trips_the_evaluate_scores(npy_pair, capsys):
    rec_path, truth_path, rec, truth = npy_pair
    rc, out, _ = run([rec_path, "--truth", truth_path, "--json"], capsys)
    assert rc == 0
    scores = json.loads(out)
    expected = evaluate(rec, truth)
    assert scores.keys() == expected.keys()
    for key, value in expected.items():
        assert scores[key] == pytest.approx(value, rel=1e-9, abs=1e-12)
    assert scores["psnr_phase"] >= 60
    assert scores["shift_0"] == pytest.approx(-1.4, abs=1e-3)


def test_table_output_lists_every_score(npy_pair, capsys):
    rec_path, truth_path, _, _ = npy_pair
    rc, out, _ = run([rec_path, "--truth", truth_path], capsys)
    assert rc == 0
    for key in ("psnr_amplitude", "ssim_phase", "nrmse", "frc50", "shift"):
        assert key in out


def test_npz_result_with_positions_scores_the_scanned_region(npy_pair, tmp_path, capsys):
    _, truth_path, rec, truth = npy_pair
    positions = np.array([[4.0, 6.0], [4.0, 20.0], [18.0, 6.0], [18.0, 20.0]])
    probe = np.ones((1, 16, 16), np.complex64)
    np.savez(tmp_path / "rec.npz", object=rec, positions=positions, probe=probe)
    rc, out, _ = run([tmp_path / "rec.npz", "--truth", truth_path, "--json", "--region",
                      "scanned"], capsys)
    assert rc == 0
    scores = json.loads(out)
    assert scores["n_pixels"] == (34 - 4) * (36 - 6)
    assert scores["psnr_amplitude"] >= 60


def test_io_files_round_trip(tmp_path, capsys):
    io = pytest.importorskip("napari_ptycho.io")
    simulate = pytest.importorskip("napari_ptycho.physics.simulate")
    from napari_ptycho.engines.base import Result

    data = simulate.simulate_ptycho(object_size=48, probe_size=32, noise="none", seed=1)
    scan = io.save(data, tmp_path / "scan.cxi")
    rec = (apply_shift(data.truth_object, (0.5, -1.0)) * np.exp(-0.3j)).astype(np.complex64)
    result = Result(iteration=1, total=1, object=rec, probe=data.truth_probe,
                    positions=data.positions, method="test")
    saved = io.save(result, tmp_path / "result.h5")
    rc, out, err = run([saved, "--truth", scan, "--json", "--region", "scanned"], capsys)
    assert rc == 0, err
    scores = json.loads(out)
    # a Fourier shift is invertible, so even a non-band-limited truth registers exactly
    assert scores["nrmse"] < 1e-5
    assert (scores["shift_0"], scores["shift_1"]) == pytest.approx((-0.5, 1.0), abs=1e-4)
    assert scores["n_pixels"] < data.truth_object.size  # only the scanned box is scored


def test_missing_truth_option_exits_2_with_a_message(npy_pair, capsys):
    rec_path, _, _, _ = npy_pair
    rc, _, err = run([rec_path], capsys)
    assert rc == 2 and "--truth" in err


@pytest.mark.parametrize("problem, match", [
    ("missing_truth_file", "does not exist"),
    ("missing_result_file", "does not exist"),
    ("shape_mismatch", "shape"),
    ("real_truth", "real"),
    ("nan_result", "NaN"),
    ("npz_without_object", "no 'object'"),
    ("scanned_without_positions", "positions"),
])
def test_bad_input_exits_2_with_a_clear_message(npy_pair, tmp_path, capsys, problem, match):
    rec_path, truth_path, rec, truth = npy_pair
    extra: list[str] = []
    if problem == "missing_truth_file":
        truth_path = tmp_path / "nope.npy"
    elif problem == "missing_result_file":
        rec_path = tmp_path / "nope.npy"
    elif problem == "shape_mismatch":
        np.save(tmp_path / "small.npy", truth[:40])
        truth_path = tmp_path / "small.npy"
    elif problem == "real_truth":
        np.save(tmp_path / "real.npy", np.abs(truth))
        truth_path = tmp_path / "real.npy"
    elif problem == "nan_result":
        bad = rec.copy()
        bad[3, 3] = np.nan
        np.save(tmp_path / "nan.npy", bad)
        rec_path = tmp_path / "nan.npy"
    elif problem == "npz_without_object":
        np.savez(tmp_path / "r.npz", obj=rec)
        rec_path = tmp_path / "r.npz"
    elif problem == "scanned_without_positions":
        extra = ["--region", "scanned"]
    rc, _, err = run([rec_path, "--truth", truth_path, *extra], capsys)
    assert rc == 2
    assert "napari-ptycho evaluate: error:" in err and match in err
