"""The GUI entry points ask OpenMP for passive waiting before torch is imported."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = ("import os, sys; {pre}import napari_ptycho.{mod}; "
         "print(os.environ.get('OMP_WAIT_POLICY'))")


def _policy(mod: str, pre: str = "", env_policy: str | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if env_policy is not None:
        env["OMP_WAIT_POLICY"] = env_policy
    out = subprocess.run([sys.executable, "-c", PROBE.format(pre=pre, mod=mod)], env=env,
                         capture_output=True, text=True, timeout=120, check=True)
    return out.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("mod", ["_widgets", "_reader", "_sample_data"])
def test_gui_entry_modules_set_passive_wait(mod: str) -> None:
    assert _policy(mod) == "PASSIVE"


def test_a_users_policy_is_kept() -> None:
    assert _policy("_widgets", env_policy="ACTIVE") == "ACTIVE"


def test_nothing_is_set_once_torch_is_loaded() -> None:
    # OpenMP has read the policy by then; setting it would only mislead
    assert _policy("_widgets", pre="import torch; ") == "None"
