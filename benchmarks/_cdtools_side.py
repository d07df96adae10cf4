"""CDTools side of ``bench_speed_2d.py`` (runs in the environment where cdtools-py lives).

Reads the CXI scan written by the main script with CDTools' own CXI reader, builds its
``FancyPtycho`` model (far field, one probe mode) and runs its Adam reconstructor, timing
every pass (epoch) over the patterns. Writes ``{"seconds_per_pass": [...], "loss": [...]}``
as JSON and the final object (complex, CDTools' own padded frame and orientation) as .npy.

Usage: ``python _cdtools_side.py SCAN.cxi PASSES BATCH_SIZE LR THREADS OUT_PREFIX``
"""

from __future__ import annotations

import json
import sys
import time


def main() -> int:
    """Run CDTools' Adam on the scan and write timings and the object."""
    import numpy as np
    import torch
    from cdtools.datasets import Ptycho2DDataset
    from cdtools.models import FancyPtycho

    path, passes, batch, lr, threads, prefix = sys.argv[1:7]
    torch.set_num_threads(int(threads))
    dataset = Ptycho2DDataset.from_cxi(path)
    model = FancyPtycho.from_dataset(dataset, n_modes=1, obj_padding=20)
    times, losses = [], []
    t0 = time.perf_counter()
    for loss in model.Adam_optimize(int(passes), dataset, batch_size=int(batch), lr=float(lr),
                                    thread=False):
        now = time.perf_counter()
        times.append(now - t0)
        losses.append(float(loss))
        t0 = now
    obj = model.obj.detach().cpu().numpy()
    np.save(prefix + "_object.npy", obj)
    probe = model.probe.detach().cpu().numpy()
    np.save(prefix + "_probe.npy", probe)
    with open(prefix + ".json", "w") as f:
        json.dump({"seconds_per_pass": times, "loss": losses,
                   "object_shape": list(obj.shape)}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
