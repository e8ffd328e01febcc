"""Latency and memory measurements shared by ``evaluate.py`` and ``bench/tpv.py``.

Memory is the peak resident-set growth of one no-grad forward pass, measured in a fresh subprocess: the
kernel's high-water mark (VmHWM) is reset through /proc/self/clear_refs just before the forward, and the
peak after it minus the resident set before it is reported (PyTorch's CPU allocator is invisible to Python's
tracemalloc, and ru_maxrss cannot be reset). It includes every activation, not only the scene representation.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import torch


def median_latency_ms(fn, repeats: int = 5, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return float(np.median(times))


def representation_bytes(model) -> int:
    """Bytes of the scene representation the encoder refines (all query maps, float32)."""
    return int(sum(s.num_cells for s in model.specs) * model.dim * 4)


_CHILD = r"""
import json, sys, torch
torch.set_num_threads(int(sys.argv[4]))
from fovea_core.tpv.config import TPVConfig
from fovea_core.tpv.model import TPVFormer
cfg = TPVConfig.from_dict(json.loads(sys.argv[1]))
model = TPVFormer(cfg, sys.argv[2]).eval()
images = torch.randn(1, 6, 3, cfg.image_height, cfg.image_width)
from fovea_core.tpv.nuscenes_sample import load_rig
from fovea_core.tpv.projection import ego_to_image
_, K, T = load_rig(image_size=(cfg.image_width, cfg.image_height))
ego2img = torch.from_numpy(ego_to_image(K, T)).float()[None]
points = torch.zeros(1, int(sys.argv[3]), 3)
def status_kib(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
with torch.no_grad():  # warm-up: one-off allocations (thread pools, kernels) are not the model's cost
    model(images, ego2img, points)
import gc; gc.collect()
before = status_kib("VmRSS")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak-RSS high-water mark
with torch.no_grad():
    model(images, ego2img, points)
print(json.dumps({"peak_forward_mib": (status_kib("VmHWM") - before) / 1024.0}))
"""


def forward_peak_memory_mib(cfg, variant: str, num_points: int = 4096, threads: int = 1) -> float:
    """Peak memory of one forward pass with ``threads`` torch threads in the child (the caller's setting)."""
    # Large blocks straight from mmap and returned on free, so the resident set follows what is live
    # (otherwise glibc keeps freed arenas and the high-water mark depends on allocation history).
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
    out = subprocess.run([sys.executable, "-c", _CHILD, cfg.to_json(), variant, str(num_points), str(threads)],
                         capture_output=True, text=True, check=True, env=env)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["peak_forward_mib"])


def torch_latency_ms(model, inputs, repeats: int = 5) -> float:
    with torch.no_grad():
        return median_latency_ms(lambda: model(*inputs), repeats=repeats)
