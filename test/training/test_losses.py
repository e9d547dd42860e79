"""The depth losses on real generator depth: their invariances, zeros, masks and gradients."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from depth_perception.scene import generate_tabletop  # noqa: E402
from depth_perception.training.losses import (  # noqa: E402
    LossConfig,
    LossInputError,
    align_prediction,
    depth_loss,
    gradient_matching_loss,
    normal_loss,
    normals_from_depth,
    silog_loss,
    ssi_loss,
)

SCENES = [generate_tabletop(seed=s, width=64, height=48) for s in (3, 4)]
DEPTH = torch.from_numpy(np.stack([s.depth_m for s in SCENES]))  # 2 x 48 x 64 metres
K = torch.from_numpy(np.stack([s.K for s in SCENES])).float()
GEN = torch.Generator().manual_seed(0)
NOISY_DEPTH = DEPTH * (1 + 0.05 * torch.randn(DEPTH.shape, generator=GEN))
NOISY_INV = 1.0 / NOISY_DEPTH


def test_silog_is_blind_to_a_global_scale_with_lambda_one():
    base = silog_loss(NOISY_DEPTH, DEPTH, lam=1.0)
    assert base > 1e-4  # the noise is seen
    assert torch.allclose(silog_loss(3.7 * NOISY_DEPTH, DEPTH, lam=1.0), base, rtol=1e-4)
    # lambda < 1 keeps part of the scale error: the metric fine-tuning signal
    assert silog_loss(3.7 * NOISY_DEPTH, DEPTH, lam=0.85) > 10 * silog_loss(NOISY_DEPTH, DEPTH, lam=0.85)


@pytest.mark.parametrize("a,b", [(2.5, 0.0), (0.01, 7.0), (3.0, -40.0), (1e3, -5.0)])
def test_ssi_is_blind_to_a_positive_scale_and_any_shift_of_the_prediction(a, b):
    base = ssi_loss(NOISY_INV, 1.0 / DEPTH)
    assert base > 1e-3
    assert torch.allclose(ssi_loss(a * NOISY_INV + b, 1.0 / DEPTH), base, rtol=1e-3)
    total = depth_loss(NOISY_INV, DEPTH, K=K, config=LossConfig(alpha=0.5, beta=0.2))
    moved = depth_loss(a * NOISY_INV + b, DEPTH, K=K, config=LossConfig(alpha=0.5, beta=0.2))
    for k in ("si", "grad"):
        assert moved.as_floats()[k] == pytest.approx(total.as_floats()[k], rel=1e-3)


@pytest.mark.parametrize("b", [0.0, 40.0])
def test_a_negated_prediction_costs_more_than_the_right_one(b):
    # far = large (depth, or a sign error) is wrong for inverse depth: the loss must say so
    right = ssi_loss(NOISY_INV, 1.0 / DEPTH)
    negated = ssi_loss(b - NOISY_INV, 1.0 / DEPTH)
    assert negated > 5 * right
    cfg = LossConfig(alpha=0.5)
    assert depth_loss(b - NOISY_INV, DEPTH, config=cfg).total > 3 * depth_loss(NOISY_INV, DEPTH, config=cfg).total


def test_trimming_leaves_the_largest_residuals_out():
    a = align_prediction(NOISY_INV[:1], 1.0 / DEPTH[:1])
    residuals, _ = torch.sort((a.aligned - a.target).abs()[a.valid])
    kept = residuals[: int(0.8 * residuals.numel())]  # the default trim: 20 %
    assert float(ssi_loss(NOISY_INV[:1], 1.0 / DEPTH[:1])) == pytest.approx(float(kept.mean()), rel=1e-5)
    assert float(ssi_loss(NOISY_INV[:1], 1.0 / DEPTH[:1], trim=0.0)) == pytest.approx(
        float(residuals.mean()), rel=1e-5)
    # a band of wrong pseudo-labels (8 % of the pixels) hurts less with the trim than without
    spoiled = NOISY_INV.clone()
    spoiled[:, :4] *= 2.0
    trimmed = ssi_loss(spoiled, 1.0 / DEPTH) / ssi_loss(NOISY_INV, 1.0 / DEPTH)
    untrimmed = ssi_loss(spoiled, 1.0 / DEPTH, trim=0.0) / ssi_loss(NOISY_INV, 1.0 / DEPTH, trim=0.0)
    assert trimmed < untrimmed
    with pytest.raises(LossInputError, match="trim"):
        ssi_loss(NOISY_INV, 1.0 / DEPTH, trim=1.0)


def test_losses_are_zero_for_identical_inputs():
    assert float(silog_loss(DEPTH, DEPTH)) == pytest.approx(0.0, abs=1e-7)
    assert float(ssi_loss(1.0 / DEPTH, 1.0 / DEPTH)) == pytest.approx(0.0, abs=1e-5)
    terms = depth_loss(1.0 / DEPTH, DEPTH, K=K, config=LossConfig(alpha=1.0, beta=1.0))
    assert all(v == pytest.approx(0.0, abs=1e-4) for v in terms.as_floats().values())
    terms = depth_loss(DEPTH, DEPTH, K=K, config=LossConfig(mode="silog", alpha=1.0, beta=1.0))
    assert all(v == pytest.approx(0.0, abs=1e-5) for v in terms.as_floats().values())


def test_a_wrong_prediction_costs_more_than_a_noisy_right_one():
    wrong = torch.flip(NOISY_INV, dims=[1])  # upside down: the table in the wrong place
    assert ssi_loss(wrong, 1.0 / DEPTH) > 3 * ssi_loss(NOISY_INV, 1.0 / DEPTH)


@pytest.mark.parametrize("mode", ["ssi", "silog"])
def test_gradients_stay_finite_and_zero_on_nan_masked_pixels(mode):
    target = DEPTH.clone()
    target[:, :10] = float("nan")  # a band without ground truth
    target[0, 20:30, 20:30] = 0.0  # 16UC1-style zeros
    pred0 = (1.0 / NOISY_DEPTH) if mode == "ssi" else NOISY_DEPTH.clone()
    pred0[:, 40:, :5] = float("nan")  # the network itself produced garbage there
    pred0[:, 40:, 5:8] = -1.0
    pred = pred0.clone().requires_grad_(True)
    mask = torch.ones_like(target, dtype=torch.bool)
    mask[1, :, -6:] = False
    cfg = LossConfig(mode=mode, alpha=0.5, beta=0.3)
    terms = depth_loss(pred, target, mask=mask, K=K, config=cfg)
    terms.total.backward()
    assert torch.isfinite(terms.total) and float(terms.total) > 0
    assert torch.isfinite(pred.grad).all()
    assert float(pred.grad[:, :10].abs().max()) == 0.0  # NaN target: no gradient
    assert float(pred.grad[1, :, -6:].abs().max()) == 0.0  # masked out
    assert float(pred.grad[:, 40:, :5].abs().max()) == 0.0  # NaN prediction
    assert float(pred.grad[:, 12:40, 10:50].abs().sum()) > 0


def test_masked_out_pixels_do_not_change_the_loss():
    mask = torch.zeros_like(DEPTH, dtype=torch.bool)
    mask[:, 8:40, 8:56] = True
    changed = NOISY_INV.clone()
    changed[:, :8] = 1e6
    cfg = LossConfig(alpha=0.5)
    a = depth_loss(NOISY_INV, DEPTH, mask=mask, config=cfg).as_floats()
    b = depth_loss(changed, DEPTH, mask=mask, config=cfg).as_floats()
    assert a == pytest.approx(b, rel=1e-5)


def test_an_image_without_valid_pixels_is_skipped_not_nan():
    target = DEPTH.clone()
    target[1] = float("nan")
    both = ssi_loss(NOISY_INV, 1.0 / target)
    first = ssi_loss(NOISY_INV[:1], 1.0 / DEPTH[:1])
    assert torch.allclose(both, first)
    assert float(ssi_loss(NOISY_INV[1:], 1.0 / target[1:])) == 0.0


def test_alignment_recovers_the_affine_map():
    inv = 1.0 / DEPTH
    a = align_prediction(0.3 * inv - 2.0, inv)
    recovered = a.aligned * a.target_spread[:, None, None] + a.target_median[:, None, None]
    assert torch.allclose(recovered, inv, rtol=1e-4)


def test_gradient_matching_ignores_a_constant_offset_but_sees_edges():
    valid = torch.isfinite(DEPTH)
    assert float(gradient_matching_loss(torch.full_like(DEPTH, 0.7), valid)) == pytest.approx(0.0)
    step = torch.zeros_like(DEPTH)
    step[:, :, 32:] = 1.0
    assert float(gradient_matching_loss(step, valid, scales=1)) > 0.0


def test_normals_of_the_table_are_the_scene_plane_normal():
    s = SCENES[0]
    n, ok = normals_from_depth(DEPTH[:1], K[:1])
    table = torch.from_numpy(s.table_mask)
    inner = table[:-1, :-1] & table[1:, :-1] & table[:-1, 1:] & ok[0]
    # x right cross y down points away from the camera; the plane normal points towards it
    cos = -(n[0].permute(1, 2, 0)[inner].double() @ torch.from_numpy(s.table_plane_camera[:3]))
    assert inner.sum() > 100 and float(cos.min()) > 0.999
    # a global scale of depth leaves normals unchanged; a tilt does not
    assert float(normal_loss(2.0 * DEPTH, DEPTH, K)) == pytest.approx(0.0, abs=1e-5)
    v = torch.arange(48, dtype=torch.float32)[None, :, None]
    assert float(normal_loss(DEPTH * (1 + 0.01 * v), DEPTH, K)) > 1e-3


def test_bad_inputs_are_refused_with_a_reason():
    with pytest.raises(LossInputError, match="differ"):
        ssi_loss(NOISY_INV[:, :10], DEPTH)
    with pytest.raises(LossInputError, match="normal"):
        depth_loss(NOISY_INV, DEPTH, config=LossConfig(beta=1.0))  # no K
    with pytest.raises(LossInputError, match="SILog"):
        depth_loss(NOISY_DEPTH, DEPTH, config=LossConfig(mode="silog"), target_kind="inverse")
    with pytest.raises(ValueError, match="mode"):
        LossConfig(mode="l1")
