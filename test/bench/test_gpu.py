"""bench/gpu.py: what it does without a GPU (here) and how it turns samples into the goal's ratios.
Its measurements themselves need an NVIDIA GPU with TensorRT (``make bench-gpu``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import gpu  # noqa: E402


def test_without_a_gpu_it_says_why_records_the_goal_unmeasured_and_exits_0(tmp_path):
    if gpu.unavailable() is None:
        pytest.skip("a GPU with TensorRT is here: the bench would measure (minutes)")
    goals_file = tmp_path / "goals.jsonl"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu.py")], cwd=ROOT,
                          env={**os.environ, "DP_BENCH_GOALS": str(goals_file)},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    line, = proc.stdout.strip().splitlines()
    assert line.startswith("bench/gpu.py: measured nothing: ") and gpu.unavailable() in line
    assert "equals the numpy back-projection (max |diff| 0 m)" in line
    row, = [json.loads(r) for r in goals_file.read_text().splitlines()]
    assert row["goal"] == "GPU end to end / engine" and row["target"] == "<= 1.3x"
    assert row["measured"] == "not measured" and row["met"] is None
    assert row["note"] == gpu.unavailable()


def test_the_cloud_check_compares_with_the_numpy_backprojection():
    assert gpu.check_cloud_on("cpu") == 0.0


def test_ratios_are_medians_over_the_engines_gpu_time():
    s = gpu.Samples(engine_gpu_ms=[4.0, 4.0, 5.0, 100.0], engine_wall_ms=[5.0] * 4,
                    end_to_end_ms=[6.0, 6.0, 6.5, 7.0], overlapped_ms=[5.0, 5.5, 5.5, 6.0],
                    stages_ms={"inference": [4.2] * 4})
    lines, b_over_a, c_over_a = gpu.summarise(s)
    assert b_over_a == pytest.approx(6.25 / 4.5) and c_over_a == pytest.approx(5.5 / 4.5)
    assert any(ln.startswith("| C end to end, next upload overlapped | 5.50 |") for ln in lines)
    assert any("inference 4.20" in ln for ln in lines)
