"""The TensorRT engine cache without TensorRT: keys, file names, atomic writes, corrupt files, and
the check of a candidate output against ONNX Runtime (real ONNX Runtime on a tiny real graph)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from depth_perception.depth import engine_cache as ec
from onnx_helpers import tiny_depth_onnx
from depth_perception.depth.engine_cache import (
    CorruptEngineError,
    EngineCache,
    EngineKey,
    EngineValidationError,
    ShapeProfile,
)

SHA = "0123456789abcdef" * 4
PROFILE = ShapeProfile((266, 266), (518, 518), (784, 784))
KEY = EngineKey(SHA, "10.13.0.35", "NVIDIA GeForce RTX 4090", (8, 9), "fp16", PROFILE)


# --------------------------------------------------------------------------------------------------
# Sizes and profiles


@pytest.mark.parametrize("text,expected", [("518x392", (518, 392)), ("518", (518, 518)),
                                           (" 364X644 ", (364, 644)), ("14×28", (14, 28))])
def test_parse_hw_reads_height_then_width(text, expected):
    assert ec.parse_hw(text) == expected


@pytest.mark.parametrize("text", ["", "x5", "5x", "0x5", "5x0", "-5x5", "5x5x5", "abc", "5.5x5"])
def test_parse_hw_rejects_bad_sizes_naming_them(text):
    with pytest.raises(ValueError, match=re.escape(repr(text))):
        ec.parse_hw(text)


def test_shape_profile_describes_itself_and_checks_order():
    assert PROFILE.describe() == "min 266x266 / opt 518x518 / max 784x784"
    assert PROFILE.token() == "266x266-518x518-784x784"
    assert ShapeProfile.fixed(518, 686).token() == "518x686"
    assert PROFILE.input_shapes() == ((1, 3, 266, 266), (1, 3, 518, 518), (1, 3, 784, 784))
    assert PROFILE.contains(300, 784) and not PROFILE.contains(300, 785)
    with pytest.raises(ValueError, match="width needs min <= opt <= max, got 600, 518, 784"):
        ShapeProfile((266, 600), (518, 518), (784, 784))
    with pytest.raises(ValueError, match="batch"):
        ShapeProfile.fixed(518, 518, batch=0)


def test_shape_profile_from_text_defaults_min_and_max_to_opt():
    assert ShapeProfile.from_text(None, None, None) == ShapeProfile.fixed(518, 518)
    assert ShapeProfile.from_text(None, "364x644", None) == ShapeProfile.fixed(364, 644)
    assert ShapeProfile.from_text("266", "518", "784x1036").max_hw == (784, 1036)


# --------------------------------------------------------------------------------------------------
# Keys


def test_key_digest_is_stable_across_runs_and_machines():
    # A change here orphans every engine users have cached: only change it on purpose.
    assert KEY.digest() == "9dc969c60ca6c6c27b977699a58fc8c7b1d9dcf3a96a960323e343531a34e062"
    assert KEY.file_name("depth_anything_v2_small") == \
        "depth_anything_v2_small.fp16.266x266-518x518-784x784.9dc969c60ca6c6c2.engine"


@pytest.mark.parametrize("change", [
    {"onnx_sha256": "f" * 64},
    {"tensorrt_version": "10.12.0.36"},
    {"gpu_name": "Orin (nvgpu)"},
    {"compute_capability": (8, 7)},
    {"precision": "fp32"},
    {"profile": ShapeProfile((266, 266), (518, 518), (798, 784))},
    {"profile": dataclasses.replace(PROFILE, batch=2)},
    {"extra_profiles": (("prompt_depth", ShapeProfile.fixed(192, 256, channels=1)),)},
])
def test_key_changes_with_every_field(change):
    other = dataclasses.replace(KEY, **change)
    assert other.digest() != KEY.digest()
    assert other.file_name("m") != KEY.file_name("m")


def test_key_rejects_bad_fields():
    with pytest.raises(ValueError, match="unknown precision 'bf16'"):
        dataclasses.replace(KEY, precision="bf16")
    with pytest.raises(ValueError, match="64 lowercase hex"):
        dataclasses.replace(KEY, onnx_sha256="abc")


def test_file_name_stem_is_made_safe():
    name = KEY.file_name("../my model (v2)")
    assert "/" not in name and " " not in name and name.startswith("my_model_v2.fp16.")


def test_sha256_file_matches_hashlib(tmp_path):
    import hashlib

    data = os.urandom(3 * (1 << 20) + 17)  # spans several read chunks
    (tmp_path / "m.onnx").write_bytes(data)
    assert ec.sha256_file(tmp_path / "m.onnx") == hashlib.sha256(data).hexdigest()


def test_default_cache_dir_honours_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert ec.default_cache_dir({}) == tmp_path / ".cache" / "depth_perception" / "engines"
    assert ec.default_cache_dir({"DEPTH_PERCEPTION_CACHE": "/srv/engines"}) == Path("/srv/engines")
    monkeypatch.setenv("DEPTH_PERCEPTION_CACHE", str(tmp_path / "x"))
    assert EngineCache().directory == tmp_path / "x"


# --------------------------------------------------------------------------------------------------
# Atomic writes and the cache on disk


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "sub" / "a.engine"
    ec.atomic_write_bytes(target, b"old")
    ec.atomic_write_bytes(target, b"new contents")
    assert target.read_bytes() == b"new contents"
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.engine"]


@pytest.mark.parametrize("fail_in", ["fsync", "replace"])
def test_failed_atomic_write_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch, fail_in):
    target = tmp_path / "a.engine"
    target.write_bytes(b"old engine")

    def boom(*_args):
        raise OSError("disk full")

    monkeypatch.setattr(os, fail_in, boom)
    with pytest.raises(OSError, match="disk full"):
        ec.atomic_write_bytes(target, b"half-written new engine")
    assert target.read_bytes() == b"old engine"
    assert [p.name for p in tmp_path.iterdir()] == ["a.engine"]


def test_build_lock_excludes_other_processes(tmp_path):
    import subprocess
    import sys

    engine = tmp_path / "cache" / "m.engine"
    try_lock = ("import fcntl, sys; f = open(sys.argv[1], 'a+b'); "
                "fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)")

    def other_process_can_lock() -> bool:
        proc = subprocess.run([sys.executable, "-c", try_lock, f"{engine}.lock"],
                              capture_output=True, timeout=30)
        return proc.returncode == 0

    with ec.build_lock(engine):
        assert not other_process_can_lock()
    assert other_process_can_lock()


def test_build_lock_tolerates_a_read_only_cache(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with ec.build_lock(blocker / "m.engine"):  # cannot create the lock: build without it
        pass


def test_cache_round_trip_with_sidecar(tmp_path):
    cache = EngineCache(tmp_path)
    entry = cache.entry(KEY, "dav2s")
    assert cache.load(entry, KEY) is None  # nothing cached yet
    engine = os.urandom(4096)
    report = ec.ValidationReport([ec.ValidationResult((1, 3, 518, 518), 0.01, 2.0, 0.005, 0.05)])
    cache.store(entry, KEY, engine, report)
    assert cache.load(entry, KEY) == engine
    side = json.loads(entry.sidecar_path.read_text())
    assert side["key"]["precision"] == "fp16" and side["key"]["compute_capability"] == [8, 9]
    assert side["engine_bytes"] == 4096 and side["key_digest"] == KEY.digest()
    assert side["validation"][0]["relative_error"] == 0.005
    cache.remove(entry)
    assert not entry.exists() and not entry.sidecar_path.exists()


def _stored(tmp_path: Path, size: int = 4096) -> tuple[EngineCache, ec.CacheEntry, bytes]:
    cache = EngineCache(tmp_path)
    entry = cache.entry(KEY)
    engine = os.urandom(size)
    cache.store(entry, KEY, engine)
    return cache, entry, engine


def test_truncated_engine_is_reported_naming_the_file(tmp_path):
    cache, entry, engine = _stored(tmp_path)
    entry.engine_path.write_bytes(engine[:1000])  # e.g. a copy cut short
    with pytest.raises(CorruptEngineError) as err:
        cache.load(entry, KEY)
    message = str(err.value)
    assert str(entry.engine_path) in message
    assert "truncated: 1000 bytes, the sidecar records 4096" in message
    assert "rebuild" in message


def test_altered_engine_of_same_size_is_reported(tmp_path):
    cache, entry, engine = _stored(tmp_path)
    entry.engine_path.write_bytes(bytes(255 - b for b in engine))
    with pytest.raises(CorruptEngineError, match="sha256 differs"):
        cache.load(entry, KEY)


def test_engine_without_sidecar_is_an_interrupted_write(tmp_path):
    cache, entry, _ = _stored(tmp_path)
    entry.sidecar_path.unlink()
    with pytest.raises(CorruptEngineError, match="sidecar .* is missing"):
        cache.load(entry, KEY)


def test_empty_engine_and_unreadable_sidecar_are_reported(tmp_path):
    cache, entry, _ = _stored(tmp_path)
    entry.sidecar_path.write_text("{not json")
    with pytest.raises(CorruptEngineError, match="unreadable"):
        cache.load(entry, KEY)
    entry.engine_path.write_bytes(b"")
    with pytest.raises(CorruptEngineError, match="empty"):
        cache.load(entry, KEY)


def test_sidecar_of_another_key_is_refused(tmp_path):
    cache, entry, _ = _stored(tmp_path)
    other = dataclasses.replace(KEY, tensorrt_version="10.0.1")
    with pytest.raises(ec.EngineKeyMismatchError, match="built for another configuration") as err:
        cache.load(entry, other)
    assert str(entry.engine_path) in str(err.value) and "10.13.0.35" in str(err.value)
    assert isinstance(err.value, CorruptEngineError)


def test_user_engine_without_sidecar_is_read_as_is(tmp_path):
    path = tmp_path / "mine.plan"
    path.write_bytes(b"serialized")
    assert ec.read_engine_file(path) == b"serialized"
    assert ec.read_engine_file(tmp_path / "absent.engine") is None
    assert ec.sidecar_path(path) == tmp_path / "mine.json"
    assert ec.sidecar_path(tmp_path / "model.bin") == tmp_path / "model.bin.json"


# --------------------------------------------------------------------------------------------------
# Comparing with the reference


def test_identical_outputs_have_zero_error():
    ref = np.linspace(0, 10, 24, dtype=np.float32).reshape(1, 4, 6)
    result = ec.compare_outputs(ref, ref.copy(), 1e-3, (1, 3, 4, 6))
    assert result.ok and result.relative_error == 0 and result.output_range == pytest.approx(10)


def test_relative_error_is_max_diff_over_reference_range():
    rng = np.random.default_rng(0)
    ref = rng.uniform(1, 5, (1, 32, 48))  # range ~4
    cand = ref.copy()
    cand[0, 3, 7] += 0.2
    result = ec.compare_outputs(ref, cand, 0.06)
    assert result.max_abs_error == pytest.approx(0.2)
    assert result.relative_error == pytest.approx(0.2 / np.ptp(ref))
    assert result.ok
    assert not ec.compare_outputs(ref, cand, 0.01).ok


def test_non_finite_and_misshapen_outputs_never_pass():
    ref = np.ones((1, 8, 8)) * np.arange(8)
    nan = ref.copy()
    nan[0, 0, 0] = np.nan
    result = ec.compare_outputs(ref, nan, 1.0)
    assert not result.ok and "1 non-finite" in result.describe()
    result = ec.compare_outputs(ref, ref[:, :4], 1.0)
    assert not result.ok and "output shape (1, 4, 8)" in result.describe()


def test_constant_reference_uses_its_magnitude():
    ref = np.full((1, 4, 4), 3.0)
    assert ec.compare_outputs(ref, ref * 1.01, 0.02).relative_error == pytest.approx(0.01)


def test_mismatch_is_refused_with_the_measured_error():
    rng = np.random.default_rng(1)
    inputs = [rng.standard_normal((1, 3, 8, 8), dtype=np.float32) for _ in range(3)]
    refs = [x.mean(axis=1) for x in inputs]
    ok = ec.check_against_reference(lambda x: x.mean(axis=1) + 1e-6, inputs, refs, 1e-3)
    assert ok.ok and ok.worst.relative_error < 1e-3

    def wrong_on_big_values(x):
        out = x.mean(axis=1)
        return np.where(out > 0.5, out * 2, out)  # like an fp16 overflow in one layer

    with pytest.raises(EngineValidationError) as err:
        ec.check_against_reference(wrong_on_big_values, inputs, refs, 0.05, what="the engine")
    worst = err.value.results and max(r.relative_error for r in err.value.results)
    assert f"relative error {worst:.3g}" in str(err.value)
    assert "refusing to use it" in str(err.value) and "tolerance 0.05" in str(err.value)


def test_candidate_that_refuses_an_input_is_a_mismatch():
    x = np.zeros((1, 3, 4, 4), np.float32)

    def refuses(_):
        raise ValueError("outside the shape profile")

    with pytest.raises(EngineValidationError, match="failed: outside the shape profile"):
        ec.check_against_reference(refuses, [x], [x[:, 0]], 0.1)


def test_validation_shapes_cover_the_profile():
    shapes = ec.validation_input_shapes(PROFILE, count=6, seed=3, multiple=14)
    assert shapes[:3] == [(1, 3, 518, 518), (1, 3, 266, 266), (1, 3, 784, 784)]
    assert len(shapes) == 6 and len(set(shapes)) == 6
    for _, _, h, w in shapes[3:]:
        assert PROFILE.contains(h, w) and h % 14 == 0 and w % 14 == 0
    assert ec.validation_input_shapes(ShapeProfile.fixed(518, 686), count=3) == [(1, 3, 518, 686)] * 3
    with pytest.raises(ValueError, match="at least one"):
        ec.validation_input_shapes(PROFILE, count=0)


def test_validate_engine_against_real_onnxruntime(tmp_path):
    pytest.importorskip("onnxruntime")
    import onnxruntime as ort

    model = tiny_depth_onnx(tmp_path / "tiny.onnx")
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])

    def same_as_ort(x):
        return session.run(["predicted_depth"], {"pixel_values": x})[0]

    profile = ShapeProfile((32, 32), (48, 64), (96, 80))
    report = ec.validate_engine(same_as_ort, model, profile, "fp32", count=4, multiple=8)
    assert [r.input_shape for r in report.results][:3] == [(1, 3, 48, 64), (1, 3, 32, 32),
                                                           (1, 3, 96, 80)]
    assert report.ok and report.worst.relative_error == 0

    def off_by_ten_percent_of_range(x):
        out = same_as_ort(x)
        return out + 0.1 * np.ptp(out)

    with pytest.raises(EngineValidationError, match=r"relative error 0\.1 .*tolerance 0\.05"):
        ec.validate_engine(off_by_ten_percent_of_range, model, profile, "fp16", count=2)


# --------------------------------------------------------------------------------------------------
# Calibration images


def _write_png(path: Path, seed: int) -> Path:
    import cv2

    rng = np.random.default_rng(seed)
    cv2.imwrite(str(path), rng.integers(0, 255, (16, 24, 3), dtype=np.uint8))
    return path


def test_calibration_images_are_listed_sorted_and_spread(tmp_path):
    for i in range(10):
        _write_png(tmp_path / f"frame_{i:03d}.png", i)
    (tmp_path / "notes.txt").write_text("not an image")
    images = ec.list_calibration_images(tmp_path)
    assert [p.name for p in images] == [f"frame_{i:03d}.png" for i in range(10)]
    picked = ec.list_calibration_images(tmp_path, limit=4)
    assert [p.name for p in picked] == ["frame_000.png", "frame_003.png", "frame_006.png",
                                        "frame_009.png"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="has no images"):
        ec.list_calibration_images(tmp_path / "empty")
    with pytest.raises(ValueError, match="does not exist"):
        ec.list_calibration_images(tmp_path / "nope")


def test_calibration_id_follows_image_bytes_and_preprocessing(tmp_path):
    images = [_write_png(tmp_path / f"{i}.png", i) for i in range(3)]
    base = ec.calibration_id(images, "imagenet-v1")
    assert ec.calibration_id(images, "imagenet-v1") == base
    assert ec.calibration_id(images, "imagenet-v2") != base
    assert ec.calibration_id(images[:2], "imagenet-v1") != base
    _write_png(images[1], 99)
    assert ec.calibration_id(images, "imagenet-v1") != base
    table = ec.calibration_cache_path(tmp_path, SHA, base, PROFILE, "dav2s")
    assert table.name == f"dav2s.{SHA[:16]}.{base[:16]}.518x518.calib"


def test_an_int8_engine_records_its_calibration_images_beside_it_not_in_its_key(tmp_path):
    record = ec.CalibrationRecord("c0ffee" * 10 + "abcd", 256, "/data/calib", "imagenet-cover-crop-v1")
    int8 = dataclasses.replace(KEY, precision="int8")
    path = ec.write_engine_file(tmp_path / "m.engine", b"engine", int8, calibration=record)
    assert ec.recorded_calibration(path) == record
    assert record.describe() == "calibrated on 256 images from /data/calib (id c0ffeec0ffeec0ff)"
    # the key (digest, file name) is the one any int8 lookup computes, whatever the images
    assert ec.read_sidecar(path)["key_digest"] == int8.digest()
    assert ec.read_engine_file(path, int8) == b"engine"
    plain = ec.write_engine_file(tmp_path / "p.engine", b"engine", KEY)
    assert ec.recorded_calibration(plain) is None
    assert ec.recorded_calibration(tmp_path / "no_sidecar.engine") is None
    side = ec.read_sidecar(path)
    side["calibration"] = {"images": "many"}
    ec.atomic_write_json(ec.sidecar_path(path), side)
    with pytest.raises(ec.CorruptEngineError, match="calibration record is malformed"):
        ec.recorded_calibration(path)
