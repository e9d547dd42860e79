"""Over time (:mod:`depth_perception.metric.temporal`): the scale filter converges, rejects spikes,
resets on real jumps and goes stale without a signal.

Scenes and the emulated relative network come from metric_helpers.py.
"""
from __future__ import annotations

import numpy as np
import pytest

from metric_helpers import CAM, GT, PRED, static_frame

from depth_perception.metric import OK, WARN, MetricAligner, MetricConfig, ScaleFit, TemporalScaleFilter


def _median_depth(res) -> float:
    return float(np.nanmedian(res.depth_m))


def _frame_args(k: int, gain: float = 1.0):
    pred, samples = static_frame(k, gain=gain)
    return pred, "relative_inverse", CAM, samples


def test_temporal_filter_converges_and_is_steady_on_a_static_scene():
    aligner = MetricAligner(MetricConfig(mode="sparse_depth"))
    results = [aligner.align(*_frame_args(k)) for k in range(30)]
    truth = float(np.nanmedian(GT))
    medians = np.array([_median_depth(r) for r in results])
    scales = np.array([r.estimate.scale for r in results])
    assert all(r.level == OK for r in results)
    assert np.all(np.abs(medians[10:] / truth - 1) < 0.02)  # converged within 10 frames
    assert scales[10:].std() / scales[10:].mean() < 0.01  # jitter of the scale < 1 %
    assert medians[10:].std() / medians[10:].mean() < 0.005
    raw = np.array([r.fit.scale for r in results])
    assert scales[10:].std() < 0.5 * raw[10:].std()  # the filter does smooth
    assert results[-1].estimate.n_updates == 30 and 0.3 < results[-1].confidence <= 1.0


def test_temporal_filter_rejects_a_spike_and_resets_on_a_real_jump():
    aligner = MetricAligner(MetricConfig(mode="sparse_depth", reset_frames=3))
    for k in range(10):
        aligner.align(*_frame_args(k))
    before = aligner.filter.estimate
    # one frame of a wildly different map (e.g. a bad sensor frame) is rejected
    spike = aligner.align(*_frame_args(10, gain=1.6))
    assert spike.level == WARN and "rejected" in spike.message
    assert spike.estimate.scale == before.scale and spike.estimate.n_rejected == 1
    assert _median_depth(spike) != pytest.approx(float(np.nanmedian(GT)), rel=0.02)  # old map, new output
    aligner.align(*_frame_args(11))
    # the network's output scale really changes: after reset_frames frames the filter follows
    jumped = [aligner.align(*_frame_args(k, gain=1.6)) for k in range(12, 16)]
    assert "rejected" in jumped[0].message and "rejected" in jumped[1].message
    assert "reset" in jumped[2].estimate.reason
    assert jumped[3].estimate.scale == pytest.approx(before.scale / 1.6, rel=0.05)
    assert _median_depth(jumped[3]) == pytest.approx(float(np.nanmedian(GT)), rel=0.02)


def test_scale_goes_stale_without_a_signal():
    aligner = MetricAligner(MetricConfig(mode="sparse_depth", stale_after=5))
    good = aligner.align(*_frame_args(0))
    held = [aligner.align(PRED, "relative_inverse", CAM, None) for _ in range(5)]
    assert [r.estimate.age for r in held] == [1, 2, 3, 4, 5]
    assert [r.estimate.stale for r in held] == [False] * 4 + [True]
    assert all(r.estimate.scale == good.estimate.scale for r in held)
    assert all(np.isfinite(r.depth_m).mean() > 0.5 for r in held)  # still published, flagged
    conf = [good.confidence] + [r.confidence for r in held]
    assert all(a > b for a, b in zip(conf, conf[1:])) and conf[-1] == 0.0
    assert "no registered depth image on `sparse_depth`" in held[0].message and "STALE" in held[-1].message
    assert held[-1].diagnostics()["stale"] == "true"


def test_filter_alone_with_hand_made_fits():
    f = TemporalScaleFilter(measurement_noise=0.02, process_noise=0.0)
    fits = [ScaleFit(2.0 * (1 + 0.01 * (-1) ** k), 0.0, "depth", 0.9, 0.02, 100, True, "ok", 90, "model")
            for k in range(20)]
    est = [f.update(fit) for fit in fits]
    assert est[-1].scale == pytest.approx(2.0, rel=0.002) and est[-1].source == "model"
    refused = f.update(ScaleFit(float("nan"), 0.0, "depth", 0.1, float("nan"), 5, False, "too few", 0))
    assert refused.scale == est[-1].scale and refused.age == 1 and "too few" in refused.reason
