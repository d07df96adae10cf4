"""``napari-ptycho reconstruct``: end-to-end on a tiny CXI, --set, bad input, Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from napari_ptycho.cli import main
from napari_ptycho.io import load_result, save
from napari_ptycho.physics.simulate import simulate_ptycho

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def scan_file(tmp_path_factory) -> Path:
    """A tiny simulated scan written as CXI through io.save."""
    data = simulate_ptycho(object="siemens", object_size=40, probe_size=16, probe="gaussian",
                           overlap=0.5, photons=1e5, seed=0)
    path = tmp_path_factory.mktemp("cli") / "tiny.cxi"
    save(data, path)
    return path


def test_reconstruct_writes_a_result_with_its_parameters(scan_file, tmp_path, capsys):
    out = tmp_path / "result.h5"
    rc = main(["reconstruct", str(scan_file), "--method", "lsqml", "--iterations", "4",
               "--probe-modes", "2", "--seed", "3", "--device", "cpu", "--set",
               "beta_probe=0.5", "-q", "-o", str(out)])
    assert rc == 0
    result = load_result(out)
    assert result.iteration == 4 and result.done
    assert result.probe.shape[0] == 2
    assert result.parameters["method"] == "lsqml"
    assert result.parameters["probe_modes"] == 2
    assert result.parameters["seed"] == 3
    assert result.parameters["beta_probe"] == 0.5
    assert result.extras["interrupted"] is False
    assert '"iteration": 4' in capsys.readouterr().out


def test_set_parses_booleans_and_the_ad_loss(scan_file, tmp_path):
    out = tmp_path / "ad.h5"
    rc = main(["reconstruct", str(scan_file), "--method", "ad", "--iterations", "2",
               "--set", "loss=poisson", "--set", "update_probe=false", "-q", "-o", str(out)])
    assert rc == 0
    params = load_result(out).parameters
    assert params["loss"] == "poisson" and params["update_probe"] is False


@pytest.mark.parametrize("argv,word", [
    (["--iterations", "0"], "iterations"),
    (["--set", "loss=l7", "--method", "ad"], "loss"),
    (["--set", "no_such_field=1"], "no_such_field"),
    (["--set", "beta_object"], "KEY=VALUE"),
    (["--set", "beta_object=fast"], "beta_object"),
    (["--method", "nonsense"], "nonsense"),
    (["-o", "result.tif"], "--output"),
    (["--method", "er"], "3D"),
])
def test_bad_arguments_exit_2_with_a_message(scan_file, capsys, argv, word):
    base = ["reconstruct", str(scan_file), "--method", "lsqml", "-q"]
    if "--method" in argv:
        base = ["reconstruct", str(scan_file), "-q"]
    assert main(base + argv) == 2
    assert word in capsys.readouterr().err


def test_missing_file_exits_2(tmp_path, capsys):
    assert main(["reconstruct", str(tmp_path / "absent.cxi"), "-q"]) == 2
    assert "absent.cxi" in capsys.readouterr().err


def test_warm_start_from_a_result_file(scan_file, tmp_path):
    first = tmp_path / "first.h5"
    assert main(["reconstruct", str(scan_file), "--method", "lsqml", "--iterations", "3",
                 "-q", "-o", str(first)]) == 0
    second = tmp_path / "second.h5"
    assert main(["reconstruct", str(scan_file), "--method", "lsqml", "--iterations", "2",
                 "--init", str(first), "-q", "-o", str(second)]) == 0
    result = load_result(second)
    assert result.iteration == 5 and len(result.errors) == 5


def test_ctrl_c_saves_the_partial_result(scan_file, tmp_path):
    out = tmp_path / "partial.h5"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "napari_ptycho.cli", "reconstruct", str(scan_file),
         "--method", "lsqml", "--iterations", "100000", "--set", "update_every=1",
         "-o", str(out)], stderr=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    try:
        # the command announces itself once data and engine are ready, then iterates
        line = proc.stderr.readline().decode()
        assert "reconstructing" in line
        time.sleep(2.0)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr.decode()[-2000:]
    result = load_result(out)
    assert 0 < result.iteration < 100000
    assert result.extras["interrupted"] is True
    assert not result.done
    assert result.parameters["iterations"] == 100000
    assert "partial result saved" in stderr.decode()


def test_first_ctrl_c_is_a_request_the_second_interrupts():
    import threading

    from napari_ptycho.commands.reconstruct import _StopRequest

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals are delivered to the main thread only")
    before = signal.getsignal(signal.SIGINT)
    with _StopRequest() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        assert stop.requested  # the first one only sets the flag
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1.0)
    assert signal.getsignal(signal.SIGINT) is before
