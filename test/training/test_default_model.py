"""The bundled default model: the recipe runs end to end (tiny), and the shipped file is what its card says."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from depth_perception.training import default_model  # noqa: E402
from depth_perception.depth.student import (  # noqa: E402
    OUTPUT_KIND,
    default_weights_path,
    load_student,
    student_info,
)
from depth_perception.depth.zoo import student_spec  # noqa: E402
from depth_perception.training.student import default_card_path  # noqa: E402


def test_the_recipe_trains_evaluates_and_installs_weights_with_a_card(tmp_path, capsys):
    rc = default_model.main(["--out", str(tmp_path / "run"), "--install", str(tmp_path / "data"), "--scenes", "12",
                             "--size", "64x48", "--steps", "2", "--batch-size", "4", "--eval-scenes", "2",
                             "--eval-scenes-640", "0", "--cache", str(tmp_path / "cache"), "--threads", "1",
                             "--quiet"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    card = json.loads((tmp_path / "data" / "student_tabletop.json").read_text())
    weights = tmp_path / "data" / "student_tabletop.safetensors"
    assert card["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest() and card["bytes"] <= 5_000_000
    assert "SYNTHETIC" in card["domain"] and card["output"]["kind"] == OUTPUT_KIND
    assert card["evaluation"]["train_size"]["scenes"] == 2 == summary["evaluation"]["train_size"]["scenes"]
    assert "motorcycle" in card["evaluation"]["real_image_domain_gap"]["image"]
    assert student_info(weights).extra["domain"].startswith("synthetic")
    assert load_student(weights) is not None


bundled = pytest.mark.skipif(not default_weights_path().is_file(), reason="no bundled student weights")


@bundled
def test_the_bundled_student_matches_its_card_and_budget():
    path = default_weights_path()
    card = json.loads(default_card_path().read_text())
    assert path.stat().st_size <= 5_000_000
    assert card["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert card["evaluation"]["train_size"]["abs_rel"] <= 0.08
    info = student_info(path)
    assert info.output == OUTPUT_KIND and info.input_size == card["input"]["input_size"]


@bundled
def test_the_bundled_student_sees_depth_in_unseen_generator_scenes():
    """Held-out seeds (never trained on), through the depth engine's pre/post-processing."""
    from depth_perception.depth.processing import postprocess, preprocess
    from depth_perception.metrics import depth_metrics
    from depth_perception.scene import generate_tabletop
    from depth_perception.training.evaluation import aligned_depth

    net = load_student()
    spec = student_spec()
    for seed in (default_model.EVAL_SEED + 500, default_model.EVAL_SEED + 501):
        s = generate_tabletop(seed=seed, width=256, height=192)
        x, geo = preprocess(s.rgb, spec)
        with torch.no_grad():
            pred = postprocess(net(pixel_values=x).predicted_depth, geo)
        m = depth_metrics(aligned_depth(pred, "relative_inverse", s.depth_m), s.depth_m)
        assert m.abs_rel < 0.08 and m.delta1 > 0.9
        # the calibrated output is inverse depth up to a mild per-image affine: near is large
        ok = np.isfinite(s.depth_m)
        assert np.corrcoef(pred[ok], 1.0 / s.depth_m[ok])[0, 1] > 0.9
