"""3D phase retrieval engines: convergence, free-LLK hold-out, recipes, starts, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from _crystal import toy_crystal
from napari_ptycho.bragg_processing import resolve_twin
from napari_ptycho.data import BraggData
from napari_ptycho.engines import EngineError, Snapshot, methods, reconstruct, stream
from napari_ptycho.engines.phase_retrieval import validate_intensity
from napari_ptycho.engines.recipe import parse_recipe, schedule

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def crystal() -> tuple[np.ndarray, BraggData]:
    obj, intensity = toy_crystal()
    return obj, BraggData(intensity, truth_object=obj)


@pytest.fixture(scope="module")
def small() -> tuple[np.ndarray, BraggData]:
    """A 24³ crystal for the tests that check bookkeeping rather than convergence."""
    obj, intensity = toy_crystal(n=24, radius=5)
    return obj, BraggData(intensity, truth_object=obj)


def _match(rec: np.ndarray, truth: np.ndarray) -> float:
    """|<rec, truth>| / (‖rec‖‖truth‖) after twin resolution, best over shifts."""
    rec, _ = resolve_twin(rec, truth)
    cc = np.fft.ifftn(np.fft.fftn(rec) * np.conj(np.fft.fftn(truth)))
    return float(np.abs(cc).max() / (np.linalg.norm(rec) * np.linalg.norm(truth)))


def test_registry_lists_the_3d_methods() -> None:
    found = methods()
    for name in ("er", "hio", "raar_3d", "er_hio"):
        assert found[name]["dims"] == 3


def test_baseline_recipe_is_600_iterations_in_the_seeds_order() -> None:
    runs = parse_recipe("(20ER+160HIO+20ER)*3")
    assert sum(n for _, n in runs) == 600
    assert runs[:3] == [("ER", 20), ("HIO", 160), ("ER", 40)]
    assert schedule("ER", 5) == ["ER"] * 5
    assert schedule("2er + raar*2") == ["ER", "ER", "RAAR", "RAAR"]


@pytest.mark.parametrize("bad", ["", "20XX", "(20ER", "20ER+", "0ER", "ER)"])
def test_bad_recipe_is_refused_with_the_recipe_named(bad: str) -> None:
    with pytest.raises(ValueError, match="recipe"):
        parse_recipe(bad)


@pytest.mark.parametrize("method,iters,recipe", [("er", 100, "ER"), ("hio", 100, "80HIO+20ER"),
                                                 ("raar_3d", 100, "80RAAR+20ER"),
                                                 ("er_hio", 200, "(20ER+160HIO+20ER)*3")])
def test_engine_reduces_chi2_and_recovers_the_crystal(crystal, method: str, iters: int,
                                                      recipe: str) -> None:
    truth, data = crystal
    snaps = list(stream(data, method, iterations=iters, update_every=50, recipe=recipe,
                        device="cpu"))
    final = snaps[-1]
    assert final.done and final.iteration == iters and len(final.errors) == iters
    assert final.errors[-1] < 0.05 * final.errors[0]
    # 1e6 photons over 32³ voxels: the Poisson floor of χ² is about (32³ / 4) / 1e6 ≈ 0.008
    assert final.extras["chi2"] < 0.015
    assert final.extras["support"].dtype == bool
    # one ER iteration from a random start matches at 0.55-0.71; the 10 % shrink-wrap keeps
    # a rim of weak noise-fitted voxels around this sharp-edged, 1e6-photon crystal, which
    # costs some correlation (0.2 would give > 0.92 here but is worse on simulate_bragg's
    # crystals and the real data: docs/benchmarks.md)
    assert _match(final.object, truth) > 0.8


def test_free_voxels_are_excluded_from_the_fit(small) -> None:
    _, data = small
    ref = reconstruct(data, "er", iterations=40, update_every=40, seed=3, device="cpu")
    # the free set depends on seed and shape only: corrupt every voxel outside the fit
    rng = np.random.default_rng(3)
    free = rng.random(data.shape) < 0.05
    corrupted = data.intensity.copy()
    corrupted[free] = corrupted[free] * 50 + 1000
    bad = reconstruct(BraggData(corrupted), "er", iterations=40, update_every=40, seed=3,
                      device="cpu")
    np.testing.assert_allclose(bad.object, ref.object, atol=1e-4 * np.abs(ref.object).max())
    assert bad.extras["chi2"] == pytest.approx(ref.extras["chi2"], rel=1e-4)
    assert bad.extras["llk_free"] > 10 * ref.extras["llk_free"]


def test_masked_voxels_are_not_fitted(small) -> None:
    _, data = small
    mask = np.ones(data.shape, bool)
    mask[:3] = False
    ref = reconstruct(BraggData(data.intensity, mask=mask), "er", iterations=30,
                      update_every=30, device="cpu")
    junk = data.intensity.copy()
    junk[:3] = 1e4
    bad = reconstruct(BraggData(junk, mask=mask), "er", iterations=30, update_every=30,
                      device="cpu")
    np.testing.assert_allclose(bad.object, ref.object, atol=1e-4 * np.abs(ref.object).max())


def test_best_of_several_starts_is_returned_with_the_ranking(small) -> None:
    _, data = small
    res = reconstruct(data, "hio", iterations=40, update_every=20, n_starts=3, device="cpu")
    ranking = res.extras["ranking"]
    assert [r["start"] for r in ranking] != [] and len(ranking) == 3
    llk = [r["llk_free"] for r in ranking]
    assert llk == sorted(llk)
    assert res.extras["best_start"] == ranking[0]["start"] == res.extras["start"]
    assert res.iteration == res.total == 120


def test_init_from_a_prediction_with_its_support_stays_converged(crystal) -> None:
    truth, data = crystal
    init = Snapshot(iteration=0, total=0, object=truth * 7.0,  # scale is not the data's
                    extras={"support": np.abs(truth) > 0})
    res = reconstruct(data, "er", init=init, iterations=10, update_every=10,
                      shrinkwrap_every=0, device="cpu")
    assert res.errors[0] < 0.015 and res.extras["chi2"] < 0.015
    np.testing.assert_array_equal(res.extras["support"], np.abs(truth) > 0)


def test_averaging_the_last_iterates_keeps_the_fit(small) -> None:
    _, data = small
    plain = reconstruct(data, "er", iterations=60, update_every=60, device="cpu")
    avg = reconstruct(data, "er", iterations=60, update_every=60, average_last=10,
                      device="cpu")
    assert avg.extras["chi2"] < 1.5 * plain.extras["chi2"] + 1e-4


def test_non_finite_values_raise_engine_error_naming_the_iteration(small, monkeypatch
                                                                   ) -> None:
    import torch

    _, data = small
    real_ifftn, calls = torch.fft.ifftn, {"n": 0}

    def poisoned(x, *a, **k):
        calls["n"] += 1
        out = real_ifftn(x, *a, **k)
        return out.mul_(float("nan")) if calls["n"] > 4 else out  # in place: out= buffers

    monkeypatch.setattr(torch.fft, "ifftn", poisoned)
    with pytest.raises(EngineError, match="iteration 4"):
        reconstruct(data, "er", iterations=10, update_every=10, device="cpu")


@pytest.mark.parametrize("override,name", [({"beta": 0.0}, "beta"),
                                           ({"support_threshold": 1.5}, "support_threshold"),
                                           ({"sigma_start": 0.5}, "sigma_start"),
                                           ({"average_last": 500}, "average_last"),
                                           ({"n_starts": 0}, "n_starts"),
                                           ({"free_fraction": 0.9}, "free_fraction"),
                                           ({"recipe": "5ER+"}, "recipe")])
def test_impossible_configs_are_refused(small, override: dict, name: str) -> None:
    _, data = small
    with pytest.raises(ValueError, match=name):
        reconstruct(data, "er", iterations=20, **override)


def test_init_mismatches_are_refused(crystal) -> None:
    truth, data = crystal
    with pytest.raises(ValueError, match="init object shape"):
        reconstruct(data, "er", init=Snapshot(0, 0, truth[:-1]), iterations=2)
    with pytest.raises(ValueError, match="n_starts"):
        reconstruct(data, "er", init=Snapshot(0, 0, truth), n_starts=2, iterations=2)


def _peaked(shape: tuple[int, ...], peak: tuple[int, ...] | None = None) -> np.ndarray:
    vol = np.ones(shape, np.float32)
    vol[peak or tuple(s // 2 for s in shape)] = 100
    return vol


@pytest.mark.parametrize("volume,match", [
    (np.ones((16, 16), np.float32), "3D"),
    (_peaked((6, 16, 16)), "too small"),
    (np.broadcast_to(np.float32(1), (600, 600, 600)), "too large"),
    (np.zeros((16, 16, 16), np.float32), "all zero"),
    (_peaked((16, 16, 16)) - 2, "negative"),
    (np.full((16, 16, 16), np.nan, np.float32), "NaN"),
    (_peaked((16, 16, 16), (0, 8, 8)), "edge"),
])
def test_bad_volumes_get_clear_messages(volume: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        validate_intensity(volume)


def test_engine_refuses_negative_counts_in_bragg_data() -> None:
    with pytest.raises(ValueError, match="negative"):
        reconstruct(BraggData(_peaked((16, 16, 16)) - 2), "er", iterations=2)


def test_update_weights_match_the_textbook_er_hio_raar_steps() -> None:
    import torch

    from napari_ptycho.engines.phase_retrieval_core import Weights, fast_abs

    gen = torch.Generator().manual_seed(0)
    shape = (6, 6, 6)
    rho = torch.randn(shape, dtype=torch.complex64, generator=gen)
    proj = torch.randn(shape, dtype=torch.complex64, generator=gen)  # P_M(rho)
    support = torch.rand(shape, generator=gen) > 0.5
    beta = 0.7
    weights = Weights(support, beta)

    def step(alg: str) -> torch.Tensor:
        w, c = weights[alg]
        return proj * w if c is None else rho * c + proj * w

    s = support
    torch.testing.assert_close(step("ER"), torch.where(s, proj, 0))
    # Fienup's HIO: P_M(ρ) inside the support, ρ − β P_M(ρ) outside
    torch.testing.assert_close(step("HIO"), torch.where(s, proj, rho - beta * proj))
    # Luke's RAAR: β/2 (R_S R_M + I) ρ + (1 − β) P_M ρ, with R = 2P − I
    r_m = 2 * proj - rho
    r_s_r_m = 2 * torch.where(s, r_m, 0) - r_m
    torch.testing.assert_close(step("RAAR"), beta / 2 * (r_s_r_m + rho) + (1 - beta) * proj)
    torch.testing.assert_close(fast_abs(proj), proj.abs())
