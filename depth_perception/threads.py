"""Thread pools of a process that runs the pipeline frame after frame (the node, the command).

The pipeline's matrix products are small (plane hypotheses scored over a few thousand points, 3x3
covariances): a threaded BLAS splits each over every core, then its threads spin, waiting for the
next product, for a while after each one. Between frames that spinning takes the cores OpenCV's
stereo matcher, the depth network and DDS need: on a 2-core machine the geometric segmentation of a
VGA frame took twice as long with OpenBLAS's default threads beside the node's other work as with
one (`bench/node.py`). So the executables run BLAS on the calling thread, unless the user chose
(``OPENBLAS_NUM_THREADS`` set); the library leaves a program's own settings alone.
"""

from __future__ import annotations

import os
from typing import Any


def limit_blas_threads(limit: int = 1) -> list[dict[str, Any]]:
    """Limit BLAS to ``limit`` threads for the rest of the process: the libraries loaded now
    (numpy's OpenBLAS or MKL, through threadpoolctl) and OpenBLAS libraries loaded later (scipy's,
    through ``OPENBLAS_NUM_THREADS``, which they read when loaded). Nothing changes when
    ``OPENBLAS_NUM_THREADS`` is already set: the user's choice. Returns threadpoolctl's
    description of the libraries limited (empty when it is not installed)."""
    if "OPENBLAS_NUM_THREADS" in os.environ:
        return []
    os.environ["OPENBLAS_NUM_THREADS"] = str(int(limit))
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:
        return []
    import numpy  # noqa: F401 - its BLAS must be loaded to be found

    threadpool_limits(limits=int(limit), user_api="blas")
    return [info for info in threadpool_info() if info.get("user_api") == "blas"]
