"""Malformed files end in a clear message, never a crash (property-based).

Each generated file is broken in one way (truncated/corrupt HDF5, missing or mismatched
positions, bad frame shapes, 2D data, NaN/negative/complex counts, empty or absurd
datasets, wrong units, pickles). For every one: ``get_reader`` returns a callable or
``None`` without raising, ``load`` raises a ``ValueError`` naming the file, and the
reader function reports an error notification and returns napari's null-layer sentinel.
"""

from __future__ import annotations

import itertools
import pickle
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_ptycho._reader import NULL_LAYERS, get_reader, read_path
from napari_ptycho.io import load

DET = "entry_1/instrument_1/detector_1"
_counter = itertools.count()


def write_cxi(path: Path, data=None, translation=None, energy=1.28e-15, distance=2.0,
              pixel=75e-6, n: int = 4, frame: int = 8) -> None:
    """A tiny CXI file; any argument may be swapped for a malformed value."""
    rng = np.random.default_rng(0)
    if data is None:
        data = rng.poisson(5, size=(n, frame, frame)).astype(np.float32)
    if translation is None:
        translation = np.zeros((len(data) if np.ndim(data) else 1, 3))
        translation[:, 0] = np.arange(len(translation)) * 1e-7
    with h5py.File(path, "w") as f:
        if isinstance(data, tuple):  # declared shape, never written (absurd sizes)
            f.create_dataset(f"{DET}/data", shape=data, dtype=np.float32,
                             chunks=(1,) * (len(data) - 2) + (min(data[-2], 64),) * 2)
        else:
            f[f"{DET}/data"] = data
        for name, value in ((f"{DET}/distance", distance), (f"{DET}/x_pixel_size", pixel),
                            ("entry_1/instrument_1/source_1/energy", energy),
                            ("entry_1/sample_1/geometry_1/translation", translation)):
            if value is not False:
                f[name] = value


def make_case(kind: str, path: Path, rng: np.random.Generator) -> Path:
    """Write one malformed file of the given kind; returns its path."""
    n = int(rng.integers(2, 6))
    good = rng.poisson(5, size=(n, 8, 8)).astype(np.float32)
    p = path.with_suffix(".cxi")
    if kind == "truncated":
        write_cxi(p, data=good)
        raw = p.read_bytes()
        p.write_bytes(raw[: int(len(raw) * rng.uniform(0.05, 0.9))])
    elif kind == "garbage":
        p = path.with_suffix(str(rng.choice([".cxi", ".h5", ".nxs", ".npz", ".tif"])))
        p.write_bytes(rng.bytes(int(rng.integers(0, 3000))))
    elif kind == "missing_positions":
        write_cxi(p, data=good, translation=False)
    elif kind == "count_mismatch":
        write_cxi(p, data=good, translation=np.zeros((n + int(rng.integers(1, 4)), 3)))
    elif kind == "non_square":
        write_cxi(p, data=rng.poisson(5, size=(n, 8, int(rng.integers(3, 7)))).astype(float))
    elif kind == "tiny_frames":
        write_cxi(p, data=np.ones((n, 1, int(rng.integers(1, 3)))))
    elif kind == "two_d":
        write_cxi(p, data=good[0])
    elif kind == "nan_counts":
        bad = good.copy()
        bad[int(rng.integers(n)), int(rng.integers(8)), int(rng.integers(8))] = rng.choice(
            [np.nan, np.inf])
        write_cxi(p, data=bad)
    elif kind == "negative_counts":
        bad = good.copy()
        bad[int(rng.integers(n)), 0, 0] = -float(rng.integers(1, 100))
        write_cxi(p, data=bad)
    elif kind == "complex_counts":
        write_cxi(p, data=good.astype(np.complex64))
    elif kind == "empty":
        write_cxi(p, data=np.zeros((0, 8, 8), np.float32), translation=np.zeros((0, 3)))
    elif kind == "absurd_size":
        shapes = [(20_000_000, 4, 4), (2, 40_000, 40_000)]
        write_cxi(p, data=shapes[int(rng.integers(2))], translation=np.zeros((2, 3)))
    elif kind == "energy_in_ev":
        write_cxi(p, data=good, energy=float(rng.uniform(5e3, 2e4)))
    elif kind == "distance_in_mm":
        write_cxi(p, data=good, distance=float(rng.uniform(2e3, 1e4)))
    elif kind == "translation_in_um":
        write_cxi(p, data=good, translation=rng.uniform(2, 50, size=(n, 3)))
    elif kind == "nan_positions":
        t = np.zeros((n, 3))
        t[int(rng.integers(n)), 0] = np.nan
        write_cxi(p, data=good, translation=t)
    elif kind == "string_data":
        write_cxi(p, data=np.array([b"abc"] * n))
    elif kind == "no_stack_hdf5":
        p = path.with_suffix(".h5")
        with h5py.File(p, "w") as f:
            f["entry/x"] = np.arange(n)
    elif kind == "pickled_npz":
        p = path.with_suffix(".npz")
        np.savez(p, diffraction=np.array([{"a": 1}] * n, dtype=object),
                 xcoords=np.arange(n), ycoords=np.arange(n))
    elif kind == "npz_wrong_keys":
        p = path.with_suffix(".npz")
        np.savez(p, foo=good)
    elif kind == "npz_amplitude_2d":
        p = path.with_suffix(".npz")
        np.savez(p, diffraction=good[0], xcoords=np.arange(1), ycoords=np.arange(1))
    elif kind == "pickled_npy":
        p = path.with_suffix(".npy")
        p.write_bytes(pickle.dumps(good))
    elif kind == "object_npy":
        p = path.with_suffix(".npy")
        np.save(p, np.array([None] * 8, dtype=object).reshape(2, 2, 2), allow_pickle=True)
    elif kind == "negative_npy":
        p = path.with_suffix(".npy")
        np.save(p, -np.ones((8, 8, 8), np.float32))
    elif kind == "flat_tiff":
        import tifffile

        p = path.with_suffix(".tif")
        tifffile.imwrite(p, np.full((4, 8, 8), np.nan, np.float32))
    elif kind == "generic_count_mismatch":
        p = path.with_suffix(".h5")
        with h5py.File(p, "w") as f:
            f["entry/data/frames"] = good
            for axis in ("x", "y"):
                f[f"entry/sample/{axis}"] = np.arange(n + int(rng.integers(1, 3)), dtype=float)
                f[f"entry/sample/{axis}"].attrs["units"] = "pixel"
    elif kind == "bragg_nan_volume":
        p = path.with_suffix(".h5")
        vol = rng.poisson(3, size=(6, 6, 6)).astype(np.float32)
        vol[int(rng.integers(6)), 0, 0] = np.nan
        with h5py.File(p, "w") as f:
            f.attrs["napari_ptycho_kind"] = "bragg"
            f["bragg/intensity"] = vol
    elif kind == "tiff_sidecar_mismatch":
        import tifffile

        p = path.with_suffix(".tif")
        tifffile.imwrite(p, good[:, :8, :8])
        np.savetxt(path.with_name(p.stem + "_positions.csv"),
                   np.zeros((n + int(rng.integers(1, 4)), 2)), delimiter=",")
    else:  # pragma: no cover - the strategy only draws known kinds
        raise AssertionError(kind)
    return p


KINDS = ["truncated", "garbage", "missing_positions", "count_mismatch", "non_square",
         "tiny_frames", "two_d", "nan_counts", "negative_counts", "complex_counts", "empty",
         "absurd_size", "energy_in_ev", "distance_in_mm", "translation_in_um",
         "nan_positions", "string_data", "no_stack_hdf5", "pickled_npz", "npz_wrong_keys",
         "npz_amplitude_2d", "pickled_npy", "object_npy", "negative_npy", "flat_tiff",
         "generic_count_mismatch", "bragg_nan_volume", "tiff_sidecar_mismatch"]


@pytest.fixture
def notifications():
    from napari.utils.notifications import notification_manager

    seen: list = []
    notification_manager.notification_ready.connect(seen.append)
    yield seen
    notification_manager.notification_ready.disconnect(seen.append)


def test_every_malformed_file_gives_a_clear_message_not_a_crash(notifications):
    written: list[Path] = []
    with tempfile.TemporaryDirectory() as tmp:

        @settings(max_examples=260, deadline=None, database=None, derandomize=True,
                  suppress_health_check=[HealthCheck.too_slow])
        @given(kind=st.sampled_from(KINDS), seed=st.integers(0, 2**32 - 1))
        def check(kind: str, seed: int) -> None:
            path = make_case(kind, Path(tmp) / f"case{next(_counter)}_{kind}",
                             np.random.default_rng(seed))
            written.append(path)
            reader = get_reader(str(path))  # must not raise
            assert reader is None or callable(reader)
            with pytest.raises(ValueError) as info:
                load(path)
            assert path.name in str(info.value) or "path" in str(info.value)
            if reader is not None:
                before = len(notifications)
                assert read_path(str(path)) == NULL_LAYERS
                assert len(notifications) == before + 1
                assert path.name in str(notifications[-1].message)
                assert "Traceback" not in str(notifications[-1].message)
            path.unlink()

        check()
    assert len(written) >= 200
    assert len({p.stem.split("_", 1)[1] for p in written}) == len(KINDS)


def test_readers_never_unpickle(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a reader tried to unpickle data")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    for kind in ("pickled_npz", "pickled_npy", "object_npy"):
        path = make_case(kind, tmp_path / kind, np.random.default_rng(0))
        with pytest.raises(ValueError):
            load(path)


def test_get_reader_declines_what_it_cannot_read(tmp_path):
    import tifffile

    assert get_reader(str(tmp_path / "nothing.cxi")) is None  # missing file
    assert get_reader(str(tmp_path)) is None  # a directory
    (tmp_path / "a.png").write_bytes(b"x")
    assert get_reader(str(tmp_path / "a.png")) is None
    tifffile.imwrite(tmp_path / "image.tif", np.zeros((8, 8), np.float32))
    assert get_reader(str(tmp_path / "image.tif")) is None  # 2D: napari's own reader
    np.save(tmp_path / "image.npy", np.zeros((8, 8)))
    assert get_reader(str(tmp_path / "image.npy")) is None
    assert get_reader([str(tmp_path / "a.png"), str(tmp_path / "b.png")]) is None
    assert get_reader(12345) is None


@pytest.mark.parametrize("kind", ["truncated", "count_mismatch", "nan_counts", "two_d",
                                  "energy_in_ev", "garbage"])
def test_broken_file_in_viewer_is_a_notification_and_viewer_stays_usable(
        make_napari_viewer, tmp_path, notifications, kind):
    viewer = make_napari_viewer()
    path = make_case(kind, tmp_path / kind, np.random.default_rng(1))
    if get_reader(str(path)) is None:
        pytest.skip("napari-ptycho declines this file; napari's own readers handle it")
    viewer.open(str(path), plugin="napari-ptycho")  # must not raise
    assert len(viewer.layers) == 0
    assert notifications and path.name in str(notifications[-1].message)
    assert str(notifications[-1].severity).lower().endswith("error")
    good = tmp_path / "good.cxi"
    write_cxi(good)
    viewer.open(str(good), plugin="napari-ptycho")
    assert any("diffraction" in layer.name for layer in viewer.layers)
