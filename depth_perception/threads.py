"""Thread pools of a process that runs the pipeline frame after frame (the node, the command).

The pipeline's matrix products are small (plane hypotheses scored over a few thousand points, 3x3
covariances): a threaded BLAS splits each over every core, then its threads spin, waiting for the
next product, for a while after each one. Between frames that spinning takes the cores OpenCV's
stereo matcher, the depth network and DDS need: on a 2-core machine the geometric segmentation of a
VGA frame took twice as long with OpenBLAS's default threads beside the node's other work as with
one (`bench/node.py`). So the executables run BLAS on the calling thread; the library leaves a
program's own settings alone.
"""

from __future__ import annotations

from typing import Any


def limit_blas_threads(limit: int = 1) -> list[dict[str, Any]]:
    """Limit every BLAS library loaded in this process (numpy's and scipy's OpenBLAS, MKL) to
    ``limit`` threads, for the rest of the process. Returns threadpoolctl's description of the
    libraries limited (empty without threadpoolctl: nothing is changed then)."""
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:
        return []
    import numpy  # noqa: F401 - its BLAS must be loaded to be found
    import scipy.linalg  # noqa: F401 - scipy brings its own

    threadpool_limits(limits=int(limit), user_api="blas")
    return [info for info in threadpool_info() if info.get("user_api") == "blas"]
