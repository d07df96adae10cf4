"""npe2 sample data (File > Open Sample): small simulated scans with ground truth.

Generated on demand from :mod:`napari_ptycho.physics.simulate` (a few seconds on a CPU):
a far-field Siemens-star scan at 70 % overlap, the same object at about 30 % overlap,
and a strained faceted Bragg crystal.
"""

from __future__ import annotations

from typing import Any

from napari_ptycho._threads import prefer_passive_wait

prefer_passive_wait()  # napari loads this module before torch: see napari_ptycho._threads

OBJECT_SIZE = 128
PROBE_SIZE = 64


def _scan(overlap: float, name: str) -> list[tuple[Any, dict[str, Any], str]]:
    from napari_ptycho.io.layers import layers_for
    from napari_ptycho.physics.simulate import simulate_ptycho

    data = simulate_ptycho(object="siemens", object_size=OBJECT_SIZE, probe_size=PROBE_SIZE,
                           overlap=overlap, photons=1e6, noise="poisson", seed=0)
    data.metadata["name"] = name
    return layers_for(data, name)


def siemens_scan() -> list[tuple[Any, dict[str, Any], str]]:
    """Far-field Siemens-star scan (70 % overlap, Poisson noise) with its ground truth."""
    return _scan(0.7, "siemens")


def low_overlap_scan() -> list[tuple[Any, dict[str, Any], str]]:
    """The same Siemens star scanned at about 30 % overlap (a hard case)."""
    return _scan(0.3, "siemens_low_overlap")


def bragg_crystal() -> list[tuple[Any, dict[str, Any], str]]:
    """A simulated strained Bragg crystal: 64³ intensity volume and the true crystal."""
    from napari_ptycho.io.layers import layers_for
    from napari_ptycho.physics.simulate import simulate_bragg

    data = simulate_bragg(size=64, seed=0)
    data.metadata["name"] = "bragg_crystal"
    return layers_for(data, "bragg_crystal")
