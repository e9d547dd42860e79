"""Tiny end-to-end training runs: student and zoo models, checkpoints, resume, curves, the CLI."""

from __future__ import annotations

import argparse

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from depth_perception.cli.training import add_train_parser, cmd_train  # noqa: E402
from depth_perception.depth.student import load_student, student_info  # noqa: E402
from depth_perception.scene import generate_tabletop  # noqa: E402
from depth_perception.training.losses import LossConfig  # noqa: E402
from depth_perception.training.checkpoints import latest_checkpoint  # noqa: E402
from depth_perception.training.config import TrainConfig, TrainingError  # noqa: E402
from depth_perception.training.evaluation import aligned_depth  # noqa: E402
from depth_perception.training.history import plot_curves  # noqa: E402
from depth_perception.training.loop import learning_rate  # noqa: E402
from depth_perception.training.train import train  # noqa: E402


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("tabletop_cache")


def _config(cache, out, **kw) -> TrainConfig:
    base = dict(model="student_tiny", data=f"tabletop:n=12,size=64x48,cache={cache}", out=str(out), steps=4,
                batch_size=4, holdout=4, eval_every=2, checkpoint_every=2, crop_hw=(32, 48), progress=False,
                threads=1, loss=LossConfig(alpha=0.5, beta=0.1))
    base.update(kw)
    return TrainConfig(**base)


def test_student_trains_checkpoints_and_resumes_to_the_same_weights(cache, tmp_path):
    straight = train(_config(cache, tmp_path / "straight", steps=6), log=lambda m: None)
    assert straight.model_path.is_file() and (tmp_path / "straight" / "eval.json").is_file()
    assert [r["step"] for r in straight.history] == [1, 2, 3, 4, 5, 6]
    assert all(np.isfinite(r["total"]) and r["normal"] > 0 for r in straight.history)  # K known: normals on
    assert straight.evaluation.n_images == 4 and 0 < straight.evaluation.abs_rel < 1
    curves = cv2.imread(str(tmp_path / "straight" / "loss_curves.png"))
    assert curves is not None and curves.std() > 0
    assert student_info(straight.model_path).extra["trained_steps"] == "6"

    # a run killed after its step-4 checkpoint: resuming continues the same schedule and data order
    import shutil

    shutil.copytree(tmp_path / "straight", tmp_path / "resumed")
    (tmp_path / "resumed" / "checkpoints" / "step_0000006.safetensors").unlink()
    (tmp_path / "resumed" / "model.safetensors").unlink()
    assert latest_checkpoint(tmp_path / "resumed").name == "step_0000004.safetensors"
    with pytest.raises(TrainingError, match="--resume"):
        train(_config(cache, tmp_path / "resumed", steps=6), log=lambda m: None)
    messages = []
    resumed = train(_config(cache, tmp_path / "resumed", steps=6, resume=True), log=messages.append)
    assert any("resumed" in m and "step 4" in m for m in messages)
    assert [r["step"] for r in resumed.history] == [1, 2, 3, 4, 5, 6]
    a, b = load_student(straight.model_path).state_dict(), load_student(resumed.model_path).state_dict()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-5), k
    # only the newest checkpoints are kept
    assert len(list((tmp_path / "resumed" / "checkpoints").glob("*.safetensors"))) == 2


def test_a_zoo_model_gets_metric_training_through_a_metric_head(tmp_path):
    """Relative Depth Anything (tiny twin) + metric head, SILog on a folder of RGB + mm depth."""
    from depth_perception.depth.estimator import DepthEstimator

    (tmp_path / "data" / "rgb").mkdir(parents=True)
    (tmp_path / "data" / "depth").mkdir()
    for i in range(6):
        s = generate_tabletop(seed=40 + i, width=64, height=48)
        cv2.imwrite(str(tmp_path / "data" / "rgb" / f"{i}.png"), s.rgb[..., ::-1])
        mm = np.where(np.isfinite(s.depth_m), np.round(s.depth_m * 1000), 0).astype(np.uint16)
        cv2.imwrite(str(tmp_path / "data" / "depth" / f"{i}.png"), mm)
    cfg = TrainConfig(model="depth_anything_v2_small_tiny", data=str(tmp_path / "data"), out=str(tmp_path / "o"),
                      steps=3, batch_size=2, holdout=2, eval_every=3, checkpoint_every=3, metric=True,
                      crop_hw=(28, 42), progress=False, loss=LossConfig(mode="silog"))
    result = train(cfg, log=lambda m: None)
    scale, shift = result.metric_head
    assert scale > 0 and np.isfinite(shift)
    assert not result.evaluation.aligned and np.isfinite(result.evaluation.abs_rel)
    assert "fixed_scale" in result.summary()
    # the saved weights are the zoo model's own: the depth engine loads them
    est = DepthEstimator("depth_anything_v2_small_tiny", weights=result.model_path, backend="torch", log=None)
    assert est.predict(generate_tabletop(seed=1, width=64, height=48).rgb).values.shape == (48, 64)


def test_the_train_command_parses_and_runs(cache, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_train_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train", "--model", "student_tiny", "--data", f"tabletop:n=12,size=64x48,cache={cache}",
                              "--out", str(tmp_path / "cli"), "--steps", "2", "--batch-size", "4", "--crop", "48x32",
                              "--holdout", "4", "--eval-every", "2", "--quiet"])
    assert args.crop == (32, 48)
    assert cmd_train(args) == 0
    out = capsys.readouterr().out
    assert "trained 2 steps" in out and "AbsRel" in out and (tmp_path / "cli" / "model.safetensors").is_file()


def test_unknown_or_untrainable_models_are_refused(cache, tmp_path):
    with pytest.raises(ValueError, match="unknown model"):
        train(_config(cache, tmp_path / "x", model="no_such_model"))
    with pytest.raises(TrainingError, match="Marigold"):
        train(_config(cache, tmp_path / "y", model="marigold_depth_tiny"))


def test_learning_rate_warms_up_then_decays():
    cfg = TrainConfig(steps=1000, lr=1e-3, warmup_steps=100)
    lrs = [learning_rate(s, cfg) for s in range(1000)]
    assert lrs[0] < lrs[50] < lrs[99] == pytest.approx(1e-3)
    assert lrs[500] < lrs[100] and lrs[-1] == pytest.approx(5e-5, rel=0.05)


def test_curves_are_drawn_without_matplotlib(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *a, **k):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    rows = [{"step": s, "total": 1.0 / s, "eval_abs_rel": (0.1 / s if s % 5 == 0 else None)} for s in range(1, 21)]
    img = cv2.imread(str(plot_curves(rows, tmp_path / "c.png")))
    assert img.shape == (360, 960, 3) and (img < 128).any()


def test_aligned_depth_recovers_depth_from_an_affine_inverse_prediction():
    s = generate_tabletop(seed=2, width=64, height=48)
    pred = 3.0 / s.depth_m - 0.7
    d = aligned_depth(pred, "relative_inverse", s.depth_m)
    ok = np.isfinite(s.depth_m)
    assert np.allclose(d[ok], s.depth_m[ok], rtol=1e-4)
    assert np.allclose(aligned_depth(2 * s.depth_m + 1, "relative_depth", s.depth_m)[ok], s.depth_m[ok], rtol=1e-4)
