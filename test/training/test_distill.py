"""Pseudo-label self-training end to end with a tiny random teacher (the zoo's ``*_tiny`` twins)."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from depth_perception.cli.training import add_distill_parser, cmd_distill  # noqa: E402
from depth_perception.depth.student import load_student  # noqa: E402
from depth_perception.training.distill import DistillConfig, distill, teacher_to_inverse  # noqa: E402
from depth_perception.training.config import TrainConfig, TrainingError  # noqa: E402


def test_a_tiny_teacher_teaches_a_tiny_student_with_sparse_metric_supervision(tmp_path):
    tc = TrainConfig(out=str(tmp_path / "d"), steps=4, batch_size=4, eval_every=4, checkpoint_every=4,
                     crop_hw=(32, 48), progress=False)
    cfg = DistillConfig(teacher="depth_anything_v2_small_tiny", teacher_random_init=True, student="student_tiny",
                        images=f"tabletop:n=12,size=64x48,cache={tmp_path / 'cache'}", sparse_points=30,
                        holdout=4, train=tc)
    result = distill(cfg, log=lambda m: None)
    assert load_student(result.model_path) is not None
    assert [r["step"] for r in _history(tmp_path / "d")] == [1, 2, 3, 4]
    assert all(r["normal"] > 0 for r in _history(tmp_path / "d"))  # the sparse term was active
    # held-out comparison: ground truth exists for generator scenes, so both rows have AbsRel
    assert result.teacher_eval.n_images == 4 and result.student_eval.n_images == 4
    assert np.isfinite(result.agreement_ssi) and result.agreement_ssi > 0
    table = result.table().splitlines()
    assert table[0].split()[:3] == ["model", "AbsRel", "delta1"] and len(table) == 4
    assert "depth_anything_v2_small_tiny" in table[1] and "student_tiny" in table[2]


def _history(out):
    import csv

    with (out / "history.csv").open() as f:
        return [{k: float(v) if v else None for k, v in r.items()} for r in csv.DictReader(f)]


def test_the_distill_command_labels_an_unlabelled_folder(tmp_path, capsys):
    import cv2

    from depth_perception.scene import generate_tabletop

    for i in range(7):
        cv2.imwrite(str(tmp_path / f"{i}.png"), generate_tabletop(seed=i, width=64, height=48).rgb[..., ::-1])
    parser = argparse.ArgumentParser()
    add_distill_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["distill", "--teacher", "depth_anything_v2_small_tiny", "--teacher-random-init",
                              "--student", "student_tiny", "--images", str(tmp_path), "--out",
                              str(tmp_path / "out"), "--steps", "2", "--batch-size", "4", "--holdout", "3",
                              "--crop", "48x32", "--quiet"])
    assert cmd_distill(args) == 0
    out = capsys.readouterr().out
    # no ground truth in a folder of images: agreement with the teacher only
    student_row = [line for line in out.splitlines() if line.startswith("student")][0]
    assert student_row.split()[2:4] == ["-", "-"]
    assert "student weights:" in out


def test_sparse_supervision_needs_ground_truth_and_teachers_need_inverse_depth(tmp_path):
    import cv2

    from depth_perception.scene import generate_tabletop

    for i in range(7):
        cv2.imwrite(str(tmp_path / f"{i}.png"), generate_tabletop(seed=i, width=64, height=48).rgb[..., ::-1])
    tc = TrainConfig(out=str(tmp_path / "o"), steps=1, batch_size=2, crop_hw=(32, 48), progress=False)
    cfg = DistillConfig(teacher="depth_anything_v2_small_tiny", teacher_random_init=True, student="student_tiny",
                        images=str(tmp_path), sparse_points=10, holdout=2, train=tc)
    with pytest.raises(ValueError, match="ground-truth depth"):
        distill(cfg, log=lambda m: None)
    with pytest.raises(TrainingError, match="Marigold"):
        teacher_to_inverse(np.ones((2, 2)), "relative_depth")
    metric = teacher_to_inverse(np.array([[2.0, 0.0]]), "metric")
    assert metric[0, 0] == 0.5 and np.isnan(metric[0, 1])
