"""The registry and the streaming API behave the same for every engine."""

from __future__ import annotations

import numpy as np
import pytest

import napari_ptycho as npt
from napari_ptycho.engines import base

EXPECTED_2D = {"epie", "rpie", "dm", "raar", "lsqml", "ad"}


def test_methods_lists_every_2d_engine_with_dims_and_description():
    listed = npt.methods()
    assert EXPECTED_2D <= set(listed)
    for name in EXPECTED_2D:
        assert listed[name]["dims"] == 2
        assert listed[name]["description"]


@pytest.mark.parametrize("name", sorted(EXPECTED_2D))
def test_every_registered_engine_imports_and_has_a_config(name):
    engine = base.get_engine(name)
    config = engine.Config()
    assert config.iterations >= 1 and hasattr(config, "seed")
    assert engine.dims == 2


def test_unknown_method_and_unknown_parameter_are_refused_by_name():
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        base.get_engine("nope")
    with pytest.raises(ValueError, match="no parameter"):
        base.make_config("epie", not_a_field=1)


def test_select_device_refuses_unknown_devices():
    assert base.select_device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="device"):
        base.select_device("tpu")


def test_result_keeps_the_snapshot_and_its_parameters():
    snap = base.Snapshot(iteration=3, total=10, object=np.ones((4, 4), np.complex64),
                         errors=[3.0, 2.0, 1.0], elapsed=1.5, method="epie")
    res = base.Result.from_snapshot(snap, {"method": "epie", "iterations": 10}, "scan.cxi")
    assert res.iteration == 3 and res.errors == [3.0, 2.0, 1.0]
    assert res.parameters["iterations"] == 10 and res.source == "scan.cxi"
    assert snap.progress == pytest.approx(0.3)
    assert snap.eta == pytest.approx(1.5 / 3 * 7)
