"""One thread count for every library the registration calls.

small_gicp, faiss, scipy's k-d tree and onnxruntime take a count per call (passed explicitly where they are
called). The others size their pools from the process, so their calls run inside ``limited_threads``:

- Open3D (FPFH, normals, RANSAC, ICP) runs on oneAPI TBB, which threadpoolctl neither sees nor limits
  (Open3D 0.20 here: no library of its own in ``threadpool_info()``); ``open3d.utility.set_max_threads``
  bounds it.
- OpenMP and BLAS pools of every loaded library (numpy's and faiss's OpenBLAS, faiss's libgomp) go through
  threadpoolctl.
"""
from __future__ import annotations

import sys
from contextlib import contextmanager

import open3d as o3d
from threadpoolctl import ThreadpoolController

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
    """Open3D's TBB and the OpenMP / BLAS pools of every loaded library limited to ``threads`` inside the
    block; the previous limits are restored after it."""
    threads = max(1, int(threads))
    previous = o3d.utility.get_max_threads()
    o3d.utility.set_max_threads(threads)
    try:
        with _threadpools().limit(limits=threads):
            yield
    finally:
        o3d.utility.set_max_threads(previous)
