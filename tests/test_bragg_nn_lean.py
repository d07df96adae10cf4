"""The compute-lean AutoPhaseNN: lossless stem, shapes, frozen inference, training, engine
options (support dilation)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_ptycho.engines import stream
from napari_ptycho.nn.autophasenn import AutoPhaseNNSpec, build_network, fourier_amplitude_loss
from napari_ptycho.nn.autophasenn_lean import (
    LeanAutoPhaseNN,
    depth_to_space,
    inference_module,
    space_to_depth,
)
from napari_ptycho.physics.simulate import simulate_bragg


def _lean(size: int = 16, channels: int = 2, depth: int = 2) -> LeanAutoPhaseNN:
    net = build_network(AutoPhaseNNSpec(size=size, base_channels=channels, depth=depth,
                                        variant="lean"))
    assert isinstance(net, LeanAutoPhaseNN)
    return net


def test_space_to_depth_is_a_lossless_rearrangement_undone_by_depth_to_space() -> None:
    x = torch.arange(2 * 3 * 4 * 6 * 8, dtype=torch.float32).reshape(2, 3, 4, 6, 8)
    y = space_to_depth(x)
    assert y.shape == (2, 24, 2, 3, 4)
    assert torch.equal(torch.sort(y.flatten()).values, torch.sort(x.flatten()).values)
    # channel k of a cell holds the voxel at offset (k // 4, k // 2 % 2, k % 2) in that cell
    assert float(y[0, 5, 1, 2, 3]) == float(x[0, 0, 2 + 1, 4 + 0, 6 + 1])
    assert torch.equal(depth_to_space(y), x)


def test_lean_network_output_is_bounded_and_zero_outside_the_centred_box() -> None:
    torch.manual_seed(0)
    net = _lean().eval()
    with torch.no_grad():
        amp, phase = net(torch.rand(2, 1, 16, 16, 16))
    assert amp.shape == phase.shape == (2, 16, 16, 16)
    assert 0 <= float(amp.min()) and float(amp.max()) <= 1
    assert float(phase.abs().max()) <= np.pi
    inside = torch.zeros(16, 16, 16, dtype=torch.bool)
    inside[4:12, 4:12, 4:12] = True
    assert float(amp[:, ~inside].abs().max()) == 0 and float(amp[:, inside].min()) > 0


def test_two_decoders_are_independent_grouped_stacks() -> None:
    """Zeroing the phase decoder's weights must not change the amplitude output."""
    torch.manual_seed(1)
    net = _lean().eval()
    x = torch.rand(1, 1, 16, 16, 16)
    with torch.no_grad():
        amp0, phase0 = net(x)
        for block in net.decoders:
            for m in block:
                if isinstance(m, torch.nn.Conv3d):
                    half = m.out_channels // 2
                    m.weight[half:] = 0  # second group = phase decoder
        net.head.weight[8:] = 0
        net.head.bias[8:] = 0
        amp1, phase1 = net(x)
    assert torch.allclose(amp0, amp1)
    assert not torch.allclose(phase0, phase1)


def test_frozen_inference_matches_the_eval_model_with_batch_norm_statistics() -> None:
    torch.manual_seed(2)
    net = _lean(size=32, channels=4, depth=3)
    for m in net.modules():  # non-trivial statistics so that folding them is exercised
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    net.eval()
    x = torch.rand(1, 1, 32, 32, 32)
    with torch.no_grad():
        ref = net(x)
        fast = inference_module(net, 32, "cpu")(x)
    for a, b in zip(ref, fast, strict=True):
        assert torch.allclose(a, b, atol=1e-4)


def test_frozen_inference_of_3d_cdi_nn_matches_and_drops_dropout() -> None:
    from napari_ptycho.nn.cdinn import CDINN, CDINNSpec

    torch.manual_seed(4)
    net = CDINN(CDINNSpec(size=16, base_channels=2, depth=2)).eval()
    x = torch.rand(1, 1, 16, 16, 16)
    with torch.no_grad():
        ref = net(x)
        fast = inference_module(net, 16, "cpu")
        for a, b in zip(ref, fast(x), strict=True):
            assert torch.allclose(a, b, atol=1e-4)


def test_one_lean_training_step_changes_every_parameter_group() -> None:
    torch.manual_seed(3)
    net = _lean()
    x = torch.rand(2, 16, 16, 16)
    amp, phase = net(x[:, None])
    loss = fourier_amplitude_loss(amp, phase, x)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in net.parameters())


@pytest.mark.parametrize("fields, word", [({"variant": "wide"}, "variant"),
                                          ({"variant": "lean", "dropout": 0.1}, "lean"),
                                          ({"variant": "lean", "box_ratio": 4}, "lean")])
def test_bad_lean_specs_are_refused(fields, word) -> None:
    with pytest.raises(ValueError, match=word):
        AutoPhaseNNSpec(size=32, depth=2, **fields).validate()


def test_support_dilation_grows_the_predicted_support_and_is_checked() -> None:
    data = simulate_bragg(size=32, seed=7, photons=1e7)
    plain = next(iter(stream(data, "autophasenn", iterations=2)))
    first = list(stream(data, "autophasenn", iterations=2, support_dilation=1))
    grown = first[-1].extras["support"]
    assert grown.sum() > plain.extras["support"].sum()
    assert np.all(grown[plain.extras["support"]])  # a superset
    assert np.isfinite(first[-1].extras["chi2"])
    with pytest.raises(ValueError, match="support_dilation"):
        list(stream(data, "autophasenn", support_dilation=-1))


def test_cdinn_twin_labels_have_the_same_diffraction_and_the_twin_loss_accepts_them() -> None:
    from napari_ptycho.nn.autophasenn import far_field_amplitude
    from napari_ptycho.nn.cdinn import LossWeights, cdinn_loss, twin_labels

    obj = torch.from_numpy(simulate_bragg(size=16, seed=4, noise="none").truth_object)[None]
    amp, phase = obj.abs() / obj.abs().max(), obj.angle()
    t_amp, t_phase = twin_labels(amp, phase)
    assert torch.allclose(far_field_amplitude(amp, phase), far_field_amplitude(t_amp, t_phase),
                          atol=1e-5)
    measured = far_field_amplitude(amp, phase)
    w = LossWeights()
    plain, _ = cdinn_loss(t_amp, t_phase, amp, phase, measured, w)
    twin, terms = cdinn_loss(t_amp, t_phase, amp, phase, measured, w, twin_invariant=True)
    assert float(twin) < 1e-5 < float(plain)
    # the label itself still scores 0, and the choice is per volume
    both_a, both_p = torch.cat([amp, t_amp]), torch.cat([phase, t_phase])
    mixed, _ = cdinn_loss(both_a, both_p, torch.cat([amp, amp]), torch.cat([phase, phase]),
                          torch.cat([measured, measured]), w, twin_invariant=True)
    assert float(mixed) < 1e-5
