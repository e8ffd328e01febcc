"""One configured thread count for every library a method calls.

Libraries that take a count per call (small_gicp, faiss, scipy's k-d tree, onnxruntime) get it where they are
called. The others size their pools from the process:

- ``limited_threads(n)``: for a block. Open3D (FPFH, normals, RANSAC, ICP) runs on oneAPI TBB, which
  threadpoolctl neither sees nor limits (Open3D 0.20: no library of its own in ``threadpool_info()``), so
  ``open3d.utility.set_max_threads`` bounds it when Open3D is loaded; the OpenMP and BLAS pools of every loaded
  library (numpy's and faiss's OpenBLAS, libgomp) go through threadpoolctl. Previous limits come back after.
- ``set_process_threads(n)``: for a process that runs one method (a node, a bench, a training job): torch's
  intra-op pool and the BLAS pools. OpenBLAS otherwise sizes its pool by the cores; on a loaded 2-core machine
  its waiting threads made four small products per DAVIS346 frame step cost 65 ms instead of 5
  (bench/event_anomaly.py).
"""
from __future__ import annotations

import sys
from contextlib import contextmanager

from threadpoolctl import ThreadpoolController, threadpool_limits

_controller: tuple[int, ThreadpoolController] | None = None


def _threadpools() -> ThreadpoolController:
    """A controller over the loaded OpenMP / BLAS libraries. Making one scans every loaded shared object
    (5.7 ms here, paid on each ``threadpool_limits`` call: three per global registration); libraries come
    with imports, so one controller serves as long as no module was imported since."""
    global _controller
    loaded = len(sys.modules)
    if _controller is None or _controller[0] != loaded:
        _controller = (loaded, ThreadpoolController())
    return _controller[1]


@contextmanager
def limited_threads(threads: int):
    """Open3D's TBB (when loaded) and the OpenMP / BLAS pools of every loaded library limited to ``threads``
    inside the block; the previous limits are restored after it."""
    threads = max(1, int(threads))
    o3d = sys.modules.get("open3d")  # not loaded: nothing of it can run in the block
    previous = o3d.utility.get_max_threads() if o3d is not None else None
    if o3d is not None:
        o3d.utility.set_max_threads(threads)
    try:
        with _threadpools().limit(limits=threads):
            yield
    finally:
        if o3d is not None:
            o3d.utility.set_max_threads(previous)


def set_process_threads(threads: int) -> None:
    """torch's pool (when torch is loaded) and the BLAS pools at ``threads`` for the rest of the process."""
    threads = max(1, int(threads))
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)
    threadpool_limits(limits=threads, user_api="blas")
