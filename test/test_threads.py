"""The executables run BLAS on one thread: its spinning threads would take the cores the stereo
matcher, the network and DDS need (see depth_perception.threads)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("threadpoolctl")

LIMITED = """
import json
from threadpoolctl import threadpool_info
from depth_perception.threads import limit_blas_threads
limited = limit_blas_threads()
print(json.dumps({"limited": [i["filepath"] for i in limited],
                  "threads": [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]}))
"""


def _run(code: str, env: dict[str, str]) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=env, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_every_blas_library_loaded_runs_one_thread_after_the_limit():
    # a process that would otherwise start two BLAS threads (this machine's cores, or two)
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    env["OPENBLAS_NUM_THREADS"] = "2"
    seen = _run(LIMITED, env)
    assert seen["limited"], "numpy's BLAS was not found"
    assert seen["threads"] and set(seen["threads"]) == {1}


def test_the_library_leaves_a_programs_blas_threads_alone():
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    env["OPENBLAS_NUM_THREADS"] = "2"
    seen = _run("import json\nfrom threadpoolctl import threadpool_info\n"
                "import depth_perception.pipeline, depth_perception.segmentation.geometric\n"
                "print(json.dumps({'threads': [i['num_threads'] for i in threadpool_info() "
                "if i['user_api'] == 'blas']}))", env)
    assert 2 in seen["threads"]
