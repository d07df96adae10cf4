"""PtychoPINN: overlap constraint, stitching, training loop, shipped model, bad input, dock."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_ptycho.engines import reconstruct, stream
from napari_ptycho.engines._pinn_data import make_groups, prepare_scan
from napari_ptycho.engines.pinn import DEFAULT_MODEL, loss_of
from napari_ptycho.nn.pinn_model import (
    PinnArch,
    PinnNet,
    load_model,
    overlap_constraint,
    probe_weight,
    stitch,
    translate,
)
from napari_ptycho.physics.simulate import simulate_ptycho
from napari_ptycho.training.pinn import grouped_grid_positions

#: PSNRs (dB, over the patches' reach) the shipped model must beat on the sample scan.
#: Measured 9.46 dB phase / 10.24 dB amplitude (weights/pinn_default.json "test"); a flat
#: object scores 8.91 / 9.04 dB there and the previous shipped model 9.06 / 4.79 dB, so the
#: bounds ask for more than a flat object in both (by a small margin: the model is small).
SHIPPED_PHASE_PSNR_BOUND = 9.2
SHIPPED_AMPLITUDE_PSNR_BOUND = 9.8


@pytest.fixture(scope="module")
def tiny():
    """A 32-pixel grouped-grid scan: cheap enough to train on in a test."""
    torch.set_num_threads(2)
    positions = grouped_grid_positions((56, 56), 32)
    return simulate_ptycho(object="lines", object_size=56, probe_size=32, photons=1e6,
                           noise="poisson", seed=3, positions=positions)


def _random_object(shape, seed=0):
    rng = np.random.default_rng(seed)
    amp = rng.uniform(0.5, 1.0, shape)
    return torch.as_tensor(amp * np.exp(1j * rng.uniform(-1, 1, shape)), dtype=torch.complex64)


def test_overlap_average_of_identical_translated_copies_returns_each_copy():
    obj = _random_object((40, 40))
    n, size = 32, 16
    corners = torch.tensor([[2, 3], [2, 7], [6, 3], [6, 7]])
    patches = torch.stack([obj[r + 8:r + 8 + size, c + 8:c + 8 + size] for r, c in corners])
    offsets = (corners - corners.float().mean(0).round()).float()
    windows = overlap_constraint(patches[None], offsets[None], n)[0]
    centre = windows[:, 8:24, 8:24]
    torch.testing.assert_close(centre, patches, atol=1e-5, rtol=1e-5)
    # where a neighbour reaches past a patch's own support, the window sees the true object
    r, c = corners[0]
    seen = windows[0, 8:28, 8:28]
    truth = obj[r + 8:r + 28, c + 8:c + 28]
    torch.testing.assert_close(seen, truth, atol=1e-5, rtol=1e-5)


def test_translate_by_whole_pixels_equals_roll_and_subpixel_is_reversible_inside():
    x = torch.zeros(1, 1, 16, 16, dtype=torch.complex64)
    x[0, 0, 5:9, 4:10] = 1 + 2j
    moved = translate(x, torch.tensor([[[2.0, -3.0]]]))
    torch.testing.assert_close(moved, torch.roll(x, (2, -3), (-2, -1)))
    there = translate(x, torch.tensor([[[0.5, 0.0]]]))
    assert there[0, 0, 5, 5].real == pytest.approx(0.5) and there[0, 0, 9, 5].real == \
        pytest.approx(0.5)


def test_stitching_true_patches_rebuilds_the_object_where_they_reach():
    obj = _random_object((48, 48), seed=1)
    positions = torch.tensor([[0.0, 0.0], [0.0, 8.0], [8.0, 0.0], [8.0, 8.0], [4.0, 4.0]])
    patches = torch.stack([obj[int(r) + 8:int(r) + 24, int(c) + 8:int(c) + 24]
                           for r, c in positions])
    est, _, norm = stitch(patches, positions, (48, 48), 32)
    torch.testing.assert_close(est[8:32, 8:32], obj[8:32, 8:32], atol=1e-5, rtol=1e-5)
    assert torch.all(est[:8] == 1)


def test_probe_weighted_stitching_ignores_guesses_where_the_probe_is_dark():
    obj = _random_object((48, 48), seed=4)
    positions = torch.tensor([[0.0, 0.0], [0.0, 8.0], [8.0, 0.0], [8.0, 8.0]])
    patches = torch.stack([obj[int(r) + 8:int(r) + 24, int(c) + 8:int(c) + 24]
                           for r, c in positions])
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    probe = torch.exp(-((yy - 15.5) ** 2 + (xx - 15.5) ** 2) / 18).to(torch.complex64)
    weight = probe_weight(probe, 16)
    assert weight.shape == (16, 16) and float(weight.max()) == pytest.approx(1.0)
    # consistent patches: any weighting gives the object back
    est, _, _ = stitch(patches, positions, (48, 48), 32, weight=weight)
    inner = (slice(12, 28), slice(12, 28))
    torch.testing.assert_close(est[inner], obj[inner], atol=1e-4, rtol=1e-4)
    # junk where the light was faint (what the loss never constrained) spoils the uniform
    # average, much less the weighted one
    junk = patches + 2.0 * (weight < 0.1)
    uniform = (stitch(junk, positions, (48, 48), 32)[0][inner] - obj[inner]).abs().mean()
    weighted = (stitch(junk, positions, (48, 48), 32, weight=weight)[0][inner]
                - obj[inner]).abs().mean()
    assert float(weighted) < 0.3 * float(uniform)


@pytest.mark.parametrize("gauge,axes", [("group", (1, 2, 3)), ("patch", (2, 3))])
def test_phase_gauge_removes_the_constant_phase_the_loss_cannot_see(gauge, axes):
    torch.manual_seed(1)
    model = PinnNet(PinnArch(32, 4, 2, gauge)).eval()
    x = torch.rand(2, 4, 32, 32)
    with torch.no_grad():
        _, before = model(x)
        model.head.bias[4:] += 5.0  # a shift the diffraction loss is blind to
        _, after = model(x)
    # the drift that pushed phases into the tanh's saturation cannot happen
    torch.testing.assert_close(after, before)
    logits = torch.atanh(before / np.pi)
    assert float(logits.mean(dim=axes).abs().max()) < 1e-4
    free = PinnNet(PinnArch(32, 4, 2, "none")).eval()
    with torch.no_grad():
        _, p0 = free(x)
        free.head.bias[4:] += 5.0
        _, p1 = free(x)
    assert float((p1 - p0).abs().mean()) > 1.0
    with pytest.raises(ValueError, match="gauge"):
        PinnNet(PinnArch(32, 4, 2, "global"))
    with pytest.raises(ValueError, match="phase_limit"):
        PinnNet(PinnArch(32, 4, 2, "group", 4.0))


def test_training_runs_single_threaded_on_cpu_and_restores_the_thread_count(tiny):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen = [torch.get_num_threads() for _ in stream(
            tiny, "pinn", iterations=2, pattern_size=32, filters=2, device="cpu",
            max_groups=2, cpu_threads=1)]
        assert seen == [1, 1]
        assert torch.get_num_threads() == 2
        gen = stream(tiny, "pinn", iterations=3, pattern_size=32, filters=2,
                     device="cpu", max_groups=2, cpu_threads=1)
        next(gen)
        gen.close()  # cancelling restores it too
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ValueError, match="cpu_threads"):
        list(stream(tiny, "pinn", cpu_threads=-1))


def test_grouped_grid_forms_exactly_its_2x2_groups():
    positions = grouped_grid_positions((100, 100), 32)
    groups, offsets = make_groups(positions, 4)
    assert len(groups) == len(positions) // 4
    assert np.all(np.abs(offsets) <= 2.0)
    assert set(np.ptp(positions[groups], axis=1).ravel().tolist()) == {4.0}


def test_a_gradient_step_lowers_the_poisson_loss(tiny):
    torch.manual_seed(0)
    model = PinnNet(PinnArch(32, 4, 4))
    scan = prepare_scan(tiny, 32, 4)
    idx = torch.arange(min(8, len(scan.groups)))
    scale = torch.tensor(scan.probe_power)
    before = loss_of("pinn", model, scan, idx, scale)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    before.backward()
    opt.step()
    with torch.no_grad():
        after = loss_of("pinn", model, scan, idx, scale)
    assert after.item() < before.item()


@pytest.mark.parametrize("method", ["pinn", "basic_pinn", "supervised"])
def test_training_a_few_epochs_on_cpu_streams_epochs_and_saves_loadable_weights(
        tiny, tmp_path, method):
    snaps = list(stream(tiny, method, iterations=2, pattern_size=32, filters=4,
                        batch_size=8, device="cpu", save_dir=str(tmp_path)))
    assert [s.iteration for s in snaps] == [1, 2] and snaps[-1].done
    assert snaps[-1].unit == "epoch" and len(snaps[-1].errors) == 2
    assert snaps[-1].object.shape == tuple(tiny.object_shape)
    assert np.all(np.isfinite(snaps[-1].object))
    model, card = load_model(tmp_path / f"{method}.pt")
    gauge = {"pinn": "group", "basic_pinn": "patch", "supervised": "none"}[method]
    assert {k: card["arch"][k] for k in ("n", "k", "filters", "gauge")} == {
        "n": 32, "k": 4, "filters": 4, "gauge": gauge}
    assert 0 < card["arch"]["phase_limit"] <= np.pi
    assert card["epochs"] == 2
    result = reconstruct(tiny, "pinn_infer", model_path=str(tmp_path / f"{method}.pt"),
                         tile_groups=2, device="cpu")
    assert result.done and result.iteration == result.total > 1
    weighted = reconstruct(tiny, "pinn_infer", model_path=str(tmp_path / f"{method}.pt"),
                           stitch_weighting="probe", device="cpu")
    assert weighted.object.shape == result.object.shape
    assert np.all(np.isfinite(weighted.object))


def test_mismatched_pattern_size_is_refused_unless_cropped_or_binned():
    big = simulate_ptycho(object="lines", object_size=96, probe_size=64, overlap=0.3,
                          photons=1e6, noise="none", seed=1)
    with pytest.raises(ValueError, match="resize='crop' or 'bin'"):
        prepare_scan(big, 32, 4)
    cropped = prepare_scan(big, 32, 4, resize="crop")
    binned = prepare_scan(big, 32, 4, resize="bin")
    assert cropped.counts.shape[-1] == binned.counts.shape[-1] == 32
    np.testing.assert_allclose(float(binned.counts.sum()), float(big.intensities().sum()),
                               rtol=1e-5)
    # the resampled probes keep the photon bookkeeping: counts = power x |O|^2, |O| in
    # [0.8, 1], so the mean counts per pattern are 0.64..1 times the probe's power
    for scan in (cropped, binned):
        ratio = float(scan.counts.sum(dim=(1, 2)).mean()) / scan.probe_power
        assert 0.6 < ratio <= 1.0
    assert float(cropped.positions.max()) < float(binned.positions.max())


def test_128_pixel_model_predicts_64_pixel_patches():
    model = PinnNet(PinnArch(128, 4, 2))
    amp, phase = model(torch.rand(1, 4, 128, 128))
    assert amp.shape == phase.shape == (1, 4, 64, 64)
    assert float(amp.min()) >= 0 and float(amp.max()) <= 1
    assert float(phase.abs().max()) <= np.pi


def test_bad_input_messages_name_the_problem(tiny):
    few = tiny.subset(slice(0, 3))
    with pytest.raises(ValueError, match="too few to form groups"):
        prepare_scan(few, 32, 4)
    no_probe = simulate_ptycho(object="lines", object_size=56, probe_size=32, overlap=0.3,
                               photons=1e6, seed=1)
    no_probe.probe = None
    with pytest.raises(ValueError, match="probe_source='rpie'"):
        prepare_scan(no_probe, 32, 4, probe_source="data")
    no_truth = simulate_ptycho(object="lines", object_size=56, probe_size=32, overlap=0.3,
                               photons=1e6, seed=1)
    no_truth.truth_object = None
    with pytest.raises(ValueError, match="needs ground truth"):
        list(stream(no_truth, "supervised", iterations=1, pattern_size=32, filters=2))
    with pytest.raises(ValueError, match="model_path"):
        list(stream(tiny, "pinn_infer", model_path="/no/such/model.pt"))
    with pytest.raises(ValueError, match="learning_rate"):
        list(stream(tiny, "pinn", learning_rate=-1.0))
    with pytest.raises(ValueError, match="stitch_weighting"):
        list(stream(tiny, "pinn_infer", stitch_weighting="gaussian"))


def test_missing_probe_is_estimated_by_a_short_rpie_run(tiny):
    data = simulate_ptycho(object="lines", object_size=48, probe_size=32, overlap=0.3,
                           photons=1e6, seed=2)
    data.probe = None
    scan = prepare_scan(data, 32, 4, probe_source="auto", probe_iterations=1)
    assert scan.probe is not None and scan.probe.shape == (32, 32)
    assert float(scan.probe.abs().square().sum()) == pytest.approx(1.0, rel=1e-4)


@pytest.mark.skipif(not DEFAULT_MODEL.is_file(), reason="shipped PtychoPINN weights missing")
def test_shipped_model_streams_tiles_and_reconstructs_the_sample_phase_above_the_bound():
    from napari_ptycho.metrics import evaluate
    from napari_ptycho.metrics.region import scanned_region
    from napari_ptycho.training.pinn import sample_scan

    data = sample_scan()
    model, card = load_model(DEFAULT_MODEL)
    assert card["arch"]["n"] == 64 and card["variant"] == "pinn" and "command" in card
    snaps = list(stream(data, "pinn_infer", tile_groups=100, device="cpu"))
    assert len(snaps) >= 2 and snaps[-1].done
    obj = snaps[-1].object
    assert obj.shape == tuple(data.object_shape) and np.all(np.isfinite(obj))
    assert np.abs(obj).max() <= 1 + 1e-5
    region = scanned_region(data.positions + 16, (32, 32), data.object_shape)
    metrics = evaluate(obj, data.truth_object, region=region)
    assert metrics["psnr_phase"] > SHIPPED_PHASE_PSNR_BOUND, metrics
    assert metrics["psnr_amplitude"] > SHIPPED_AMPLITUDE_PSNR_BOUND, metrics
    flat = evaluate(np.ones_like(obj), data.truth_object, region=region)
    assert metrics["psnr_phase"] > flat["psnr_phase"]
    assert metrics["psnr_amplitude"] > flat["psnr_amplitude"]


def test_train_command_writes_weights_and_a_card_with_command_and_threads(tmp_path):
    import json

    from napari_ptycho.cli import main

    before = torch.get_num_threads()
    rc = main(["train", "pinn", "sim:lines", "--object-size", "56", "--probe-size", "32",
               "--pattern-size", "32", "--grid", "grouped", "--photons", "1e6",
               "--epochs", "1", "--filters", "2", "--threads", "1", "--device", "cpu",
               "-o", str(tmp_path), "--name", "tiny"])
    assert rc == 0 and (tmp_path / "tiny.pt").is_file()
    card = json.loads((tmp_path / "tiny.json").read_text())
    assert card["config"]["cpu_threads"] == 1 and card["arch"]["gauge"] == "group"
    assert card["arch"]["phase_limit"] == pytest.approx(np.pi / 2)
    assert card["training_data"]["patterns"] > 0 and "command" in card
    assert torch.get_num_threads() == before
