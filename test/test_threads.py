"""The executables run BLAS on one thread: its spinning threads would take the cores the stereo
matcher, the network and DDS need (see depth_perception.threads). Each case runs in a fresh
process, since BLAS threads are a process's settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("threadpoolctl")

#: the BLAS libraries of this process and their thread counts, after ``setup``
REPORT = """
import json
{setup}
import numpy, scipy.linalg  # scipy's own OpenBLAS is loaded here, after the limit
from threadpoolctl import threadpool_info
print(json.dumps([[i["filepath"], i["num_threads"]] for i in threadpool_info()
                  if i["user_api"] == "blas"]))
"""
LIMIT = "from depth_perception.threads import limit_blas_threads; limit_blas_threads()"


def blas_threads(setup: str, **env: str) -> dict[str, int]:
    """{library path: threads} in a process that would otherwise start two BLAS threads."""
    environ = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    environ["GOTO_NUM_THREADS"] = "2"  # OpenBLAS's default for this test: two threads on any machine
    environ.update(env)
    out = subprocess.run([sys.executable, "-c", REPORT.format(setup=setup)], capture_output=True,
                         text=True, check=True, env=environ, timeout=120)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_without_the_limit_blas_would_start_two_threads():
    threads = blas_threads("")
    assert threads and set(threads.values()) == {2}


def test_every_blas_library_runs_one_thread_after_the_limit_loaded_before_or_after_it():
    threads = blas_threads(LIMIT)
    assert len(threads) >= 2  # numpy's, and scipy's loaded after the limit
    assert set(threads.values()) == {1}


def test_a_users_openblas_num_threads_is_kept():
    threads = blas_threads(LIMIT, OPENBLAS_NUM_THREADS="2")
    assert set(threads.values()) == {2}


def test_the_library_leaves_a_programs_blas_threads_alone():
    threads = blas_threads("import depth_perception.pipeline, depth_perception.segmentation.geometric")
    assert set(threads.values()) == {2}
