"""Shared fixtures: the external test data folder and small simulated scans."""

from __future__ import annotations

from pathlib import Path

import pytest

#: ../shared/data relative to the repository root (CI places shared/ beside the clone).
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of the external test data; skips the test when the folder is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"external test data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(autouse=True, scope="session")
def _torch_threads() -> None:
    """Keep torch on the cores CI has (2) and deterministic enough for fixed bounds."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return
    torch.set_num_threads(2)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module of tiny tensors (``pytestmark = pytest.mark.usefixtures(
    "one_torch_thread")``): they gain nothing from a second thread, and on a loaded 2-core
    machine every parallel region can stall on a descheduled sibling thread."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def diffusion_scan():
    """A 32² grf object scanned by a 16² probe at 30 % overlap: the diffusion tests' tiny case."""
    from napari_ptycho.physics.simulate import simulate_ptycho

    return simulate_ptycho(object="grf", object_size=32, probe_size=16, overlap=0.3,
                           photons=1e5, photons_mode="max", seed=3, probe_fwhm=6)
