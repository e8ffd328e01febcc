"""One thread count for every library the registration calls.

small_gicp, faiss, scipy's k-d tree and onnxruntime take a count per call (passed explicitly where they are
called). Open3D (FPFH, normals, RANSAC) and BLAS size their OpenMP / BLAS pools from the process instead, so
their calls run inside ``limited_threads``, which sets those pools through threadpoolctl and restores them.
"""
from __future__ import annotations

from contextlib import contextmanager

from threadpoolctl import threadpool_limits


@contextmanager
def limited_threads(threads: int):
    """OpenMP and BLAS pools of every loaded library limited to ``threads`` inside the block."""
    with threadpool_limits(limits=max(1, int(threads))):
        yield
