"""Training data sources on tiny real data: generator scenes written as folders and rosbags."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from depth_perception.scene import generate_tabletop
from depth_perception.training.dataset import DataError, depth_from_array, split
from depth_perception.training.sources import BagDataset, FolderDataset, TabletopDataset, open_dataset
from depth_perception.training.view import Augment, TrainingView

SCENES = [generate_tabletop(seed=s, width=64, height=48) for s in range(3)]
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def _mm(depth_m: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(depth_m), np.round(depth_m * 1000), 0).astype(np.uint16)


@pytest.fixture()
def rgbd_folder(tmp_path):
    (tmp_path / "rgb").mkdir()
    (tmp_path / "depth").mkdir()
    for i, s in enumerate(SCENES):
        cv2.imwrite(str(tmp_path / "rgb" / f"f{i}.png"), s.rgb[..., ::-1])
        if i == 2:
            np.save(tmp_path / "depth" / f"f{i}.npy", s.depth_m)
        else:
            cv2.imwrite(str(tmp_path / "depth" / f"f{i}.png"), _mm(s.depth_m))
    np.savetxt(tmp_path / "K.txt", SCENES[0].K)
    return tmp_path


def test_folder_of_rgb_and_depth_reads_mm_png_and_metre_npy(rgbd_folder):
    ds = open_dataset(str(rgbd_folder))
    assert isinstance(ds, FolderDataset) and len(ds) == 3 and ds.has_depth
    for i, s in enumerate(SCENES):
        sample = ds[i]
        assert np.array_equal(sample.rgb, s.rgb)
        ok = np.isfinite(s.depth_m)
        assert np.array_equal(np.isfinite(sample.depth_m), ok)
        tol = 0.0 if i == 2 else 0.0005  # npy exact, PNG rounded to millimetres
        assert np.abs(sample.depth_m[ok] - s.depth_m[ok]).max() <= tol + 1e-6
        assert np.allclose(sample.K, SCENES[0].K)


def test_flat_folder_with_depth_suffix_and_camera_json(tmp_path):
    s = SCENES[1]
    cv2.imwrite(str(tmp_path / "a.jpg"), s.rgb[..., ::-1])
    np.save(tmp_path / "a_depth.npy", s.depth_m)
    (tmp_path / "camera.json").write_text(json.dumps({"fx": 50.0, "fy": 51.0, "cx": 31.5, "cy": 23.5}))
    ds = open_dataset(f"folder:{tmp_path}")
    assert len(ds) == 1 and ds[0].name == "a"
    assert ds[0].K[1, 1] == 51.0 and np.allclose(ds[0].depth_m, s.depth_m, equal_nan=True)


def test_images_alone_are_unlabelled_and_refused_for_supervised_training(tmp_path):
    cv2.imwrite(str(tmp_path / "x.png"), SCENES[0].rgb)
    with pytest.raises(DataError, match="no depth files"):
        open_dataset(str(tmp_path))
    ds = open_dataset(str(tmp_path), require_depth=False)
    assert not ds.has_depth and ds[0].depth_m is None
    with pytest.raises(DataError, match="no depth"):
        TrainingView(ds, (32, 48), MEAN, STD)


def test_unregistered_or_ambiguous_depth_is_refused(tmp_path):
    cv2.imwrite(str(tmp_path / "x.png"), SCENES[0].rgb)
    np.save(tmp_path / "x_depth.npy", np.ones((10, 10), np.float32))
    with pytest.raises(DataError, match="registered"):
        open_dataset(str(tmp_path))[0]
    with pytest.raises(DataError, match="ambiguous"):
        depth_from_array(np.ones((4, 4), np.uint8))


def _write_bag(path, with_depth_for=(0, 1, 2), compressed=False):
    from depth_perception.camera import CameraModel
    from depth_perception.ros import messages as M
    from depth_perception.ros.bag import BagWriter

    types = M.rosbags_types()
    with BagWriter(path, types=types) as w:
        for i, s in enumerate(SCENES):
            stamp = 1_000_000_000 + i * 100_000_000
            header = M.make_header(types, stamp, "cam")
            img = M.rgb_to_compressed(types, s.rgb, header, "png") if compressed else \
                M.numpy_to_image(types, s.rgb, "rgb8", header)
            w.write("/camera/image", img, stamp)
            cam = CameraModel(width=64, height=48, K=s.K)
            w.write("/camera/camera_info", M.model_to_camera_info(types, cam, header), stamp)
            if i in with_depth_for:  # registered depth 5 ms later, as a driver would stamp it
                dh = M.make_header(types, stamp + 5_000_000, "cam")
                w.write("/camera/depth", M.depth_to_image(types, s.depth_m, dh, "16UC1"), stamp + 5_000_000)


@pytest.mark.parametrize("compressed", [False, True])
def test_bag_pairs_images_with_depth_by_stamp(tmp_path, compressed):
    bag = tmp_path / "rgbd"
    _write_bag(bag, with_depth_for=(0, 2), compressed=compressed)
    ds = open_dataset(f"bag:{bag},slop=0.01")
    assert isinstance(ds, BagDataset) and len(ds) == 2 and ds.skipped == 1
    for sample, s in zip(ds, (SCENES[0], SCENES[2])):
        assert np.array_equal(sample.rgb, s.rgb)
        ok = np.isfinite(s.depth_m)
        assert np.abs(sample.depth_m[ok] - s.depth_m[ok]).max() < 0.0006
        assert np.allclose(sample.K, SCENES[0].K)
    # too tight a slop finds no pair; a plain path is recognised as a bag; images alone work too
    with pytest.raises(DataError, match="within"):
        open_dataset(f"bag:{bag},slop=0.001")
    assert len(open_dataset(str(bag), require_depth=False)) == 3
    with pytest.raises(DataError, match="not in the bag"):
        open_dataset(f"bag:{bag},depth=/nope")


def test_tabletop_is_rendered_once_then_read_from_the_cache(tmp_path, monkeypatch):
    ds = open_dataset(f"tabletop:n=3,size=64x48,seed=1,cache={tmp_path}")
    assert len(ds) == 3 and ds.has_depth
    ref = generate_tabletop(seed=2, width=64, height=48)
    assert np.array_equal(ds[1].rgb, ref.rgb) and np.allclose(ds[1].K, ref.K)
    ok = np.isfinite(ref.depth_m)
    assert np.allclose(ds[1].depth_m[ok], ref.depth_m[ok], rtol=1e-3)  # float16 storage
    assert list((tmp_path / "64x48").glob("*.npz"))

    import depth_perception.training.sources as sources

    def boom(*a, **k):
        raise AssertionError("rendered again")

    monkeypatch.setattr(sources, "_render_chunk", boom)
    again = open_dataset(f"tabletop:n=3,size=64x48,seed=1,cache={tmp_path}")
    assert np.array_equal(again.rgb, ds.rgb)


def test_bad_specs_name_the_problem(tmp_path):
    with pytest.raises(DataError, match="unknown tabletop option"):
        open_dataset("tabletop:n=3,colour=red")
    with pytest.raises(DataError, match="WIDTHxHEIGHT"):
        open_dataset("tabletop:size=big")
    with pytest.raises(DataError, match="no such path"):
        open_dataset(str(tmp_path / "missing"))


def test_split_is_disjoint_and_seeded(tmp_path):
    ds = TabletopDataset(n=5, width=64, height=48, cache_dir=tmp_path)
    a, b = split(ds, 2, seed=3)
    assert len(a) == 3 and len(b) == 2 and not set(a.indices) & set(b.indices)
    assert split(ds, 2, seed=3)[1].indices == b.indices
    with pytest.raises(DataError):
        split(ds, 5)


def _table_normals(item):
    import torch

    from depth_perception.training.losses import normals_from_depth

    n, ok = normals_from_depth(item["target"][None], item["K"][None])
    return n[0].permute(1, 2, 0)[ok[0]].double(), ok


def test_training_view_crops_flips_and_keeps_intrinsics_consistent(tmp_path):
    ds = TabletopDataset(n=2, width=64, height=48, cache_dir=tmp_path, n_objects=1)
    view = TrainingView(ds, (32, 48), MEAN, STD, augment=Augment(scale=(1.1, 1.3)), seed=0)
    s = generate_tabletop(seed=0, width=64, height=48, n_objects=1)
    up = s.table_plane_camera[:3]
    flips = set()
    for epoch in range(6):
        view.epoch = epoch
        item = view[0]
        assert item["pixel_values"].shape == (3, 32, 48) and item["target"].shape == (32, 48)
        assert bool(item["has_K"])
        normals, _ = _table_normals(item)
        # the table dominates the crop: the median normal must be the plane's (x mirrored if flipped)
        med = normals.median(dim=0).values.numpy()
        med /= np.linalg.norm(med)
        direct, mirrored = -med @ up, -med @ (up * np.array([-1, 1, 1]))
        assert max(direct, mirrored) > 0.995
    # full-size view, no scale jitter: each item is the image or its mirror, and both occur
    whole = TrainingView(ds, (48, 64), MEAN, STD, augment=Augment(scale=(1.0, 1.0)), seed=0)
    for epoch in range(8):
        whole.epoch = epoch
        t = whole[1]["target"].numpy()
        if np.allclose(t, ds[1].depth_m, equal_nan=True):
            flips.add(False)
        else:
            assert np.allclose(t, ds[1].depth_m[:, ::-1], equal_nan=True)
            flips.add(True)
    assert flips == {True, False}
    plain = TrainingView(ds, (48, 64), MEAN, STD, augment=None)[1]
    assert np.allclose(plain["target"].numpy(), ds[1].depth_m, equal_nan=True)
    x = plain["pixel_values"].numpy().transpose(1, 2, 0) * STD + MEAN
    assert np.abs(x * 255 - ds[1].rgb).max() < 0.51
