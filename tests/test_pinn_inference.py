"""PtychoPINN inference path: stitching fast path, batching, channels-last weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_ptycho.engines._pinn_data import prepare_scan
from napari_ptycho.engines.pinn import predict_object
from napari_ptycho.nn.pinn_model import PinnArch, PinnNet, load_model, save_model, stitch
from napari_ptycho.physics.simulate import simulate_ptycho
from napari_ptycho.training.pinn import grouped_grid_positions


def _reference_stitch(patches: np.ndarray, corners: np.ndarray, shape: tuple[int, int],
                      frame: int) -> np.ndarray:
    """Plain loop over whole-pixel windows: the normalised average of eq. 1, fill 1."""
    n = patches.shape[-1]
    lo = (frame - n) // 2
    pad = frame + n
    total = np.zeros((shape[0] + 2 * pad, shape[1] + 2 * pad), np.complex128)
    norm = np.zeros(total.shape)
    for p, (r, c) in zip(patches, corners.astype(int), strict=True):
        total[pad + r + lo:pad + r + lo + n, pad + c + lo:pad + c + lo + n] += p
        norm[pad + r + lo:pad + r + lo + n, pad + c + lo:pad + c + lo + n] += 1
    total, norm = total[pad:-pad, pad:-pad], norm[pad:-pad, pad:-pad]
    return np.where(norm > 0.05, total / np.maximum(norm, 0.05), 1.0)


def test_whole_pixel_stitching_matches_a_plain_loop_even_off_the_frame():
    rng = np.random.default_rng(0)
    patches = (rng.uniform(0.5, 1, (7, 8, 8)) * np.exp(1j * rng.uniform(-1, 1, (7, 8, 8))))
    # corners inside, partly above / left of the frame, and partly past its far edge
    corners = np.array([[0, 0], [3, 5], [-9, 2], [4, -10], [20, 21], [14, 3], [-3, -3]],
                       float)
    est, _, _ = stitch(torch.as_tensor(patches, dtype=torch.complex64),
                       torch.as_tensor(corners), (30, 32), 16)
    ref = _reference_stitch(patches, corners, (30, 32), 16)
    np.testing.assert_allclose(est.numpy(), ref, atol=1e-5)


def test_whole_pixel_fast_path_agrees_with_the_subpixel_path():
    rng = np.random.default_rng(1)
    patches = torch.as_tensor(rng.uniform(0.5, 1, (5, 8, 8)), dtype=torch.complex64)
    corners = torch.tensor([[0.0, 0.0], [2.0, 3.0], [6.0, 1.0], [-4.0, 5.0], [9.0, 9.0]])
    fast, _, _ = stitch(patches, corners, (28, 28), 16)
    # a hair off whole pixels goes through the bilinear move instead
    slow, _, _ = stitch(patches, corners + 1e-4, (28, 28), 16)
    torch.testing.assert_close(fast, slow, atol=1e-3, rtol=1e-3)


@pytest.fixture(scope="module")
def tiny_scan():
    positions = grouped_grid_positions((56, 56), 32)
    data = simulate_ptycho(object="lines", object_size=56, probe_size=32, photons=1e6,
                           noise="poisson", seed=3, positions=positions)
    return prepare_scan(data, 32, 4)


def test_prediction_does_not_depend_on_the_network_batch(tiny_scan):
    torch.manual_seed(0)
    model = PinnNet(PinnArch(32, 4, 4, "group")).eval()
    one, _ = predict_object(model, tiny_scan, batch=1)
    many, _ = predict_object(model, tiny_scan, batch=64)
    torch.testing.assert_close(one, many, atol=1e-5, rtol=1e-5)
    # streaming two tiles into running sums gives the one-call object
    half = len(tiny_scan.groups) // 2
    _, sums = predict_object(model, tiny_scan, stop=half)
    tiled, _ = predict_object(model, tiny_scan, start=half, out=sums)
    torch.testing.assert_close(tiled, many, atol=1e-5, rtol=1e-5)


def test_channels_last_weights_survive_save_and_load(tmp_path):
    torch.manual_seed(2)
    model = PinnNet(PinnArch(32, 4, 4, "group")).eval()
    conv = model.encoder[0][0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    path = save_model(model, tmp_path / "m.pt", {})
    loaded, _ = load_model(path)
    x = torch.rand(3, 4, 32, 32)
    with torch.no_grad():
        for a, b in zip(model(x), loaded(x), strict=True):
            torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert loaded.encoder[0][0].weight.is_contiguous(memory_format=torch.channels_last)


def test_amplitude_headroom_scales_the_sigmoid_and_old_cards_keep_the_unit_range(tmp_path):
    torch.manual_seed(3)
    x = torch.rand(2, 4, 32, 32)
    plain = PinnNet(PinnArch(32, 4, 4, "group")).eval()
    roomy = PinnNet(PinnArch(32, 4, 4, "group", amplitude_max=1.25)).eval()
    roomy.load_state_dict(plain.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(roomy(x)[0], 1.25 * plain(x)[0])
        torch.testing.assert_close(roomy(x)[1], plain(x)[1])
    # a card written before the option existed loads with the paper's [0, 1] range
    path = save_model(plain, tmp_path / "old.pt", {})
    card = path.with_suffix(".json")
    text = card.read_text().replace('"amplitude_max": 1.0', '"_dropped": 0')
    card.write_text(text.replace(',\n    "_dropped": 0', ""))
    assert "amplitude_max" not in card.read_text()
    assert load_model(path)[0].arch.amplitude_max == 1.0
    with pytest.raises(ValueError, match="amplitude_max"):
        PinnArch(32, 4, 4, amplitude_max=0.0).validate()
