"""Files on disk: reading input images and videos, writing depth maps and PLY point clouds.

Inputs are written with OpenCV (which stores BGR) so that the RGB order of what is read is checked,
not assumed.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from depth_perception.files import (
    DEPTH_FORMATS,
    InputError,
    count_frames,
    iter_images,
    list_inputs,
    read_image,
    read_ply,
    write_depth,
    write_ply,
)

RED_GREEN_BLUE = np.array([200, 100, 30], np.uint8)  # an RGB colour whose channels all differ


def _rgb_image(h: int = 12, w: int = 16) -> np.ndarray:
    img = np.empty((h, w, 3), np.uint8)
    img[...] = RED_GREEN_BLUE
    img[:, : w // 2, 2] = 250  # left half is bluer: the image is not uniform
    return img


def _write_bgr(path: Path, rgb: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]))
    return path


# -- reading images -------------------------------------------------------------------------------


def test_read_png_is_exact_rgb(tmp_path):
    rgb = _rgb_image()
    out = read_image(_write_bgr(tmp_path / "a.png", rgb))
    assert out.dtype == np.uint8 and out.shape == (12, 16, 3)
    np.testing.assert_array_equal(out, rgb)


def test_read_jpeg_is_close_rgb(tmp_path):
    rgb = _rgb_image(32, 32)
    out = read_image(_write_bgr(tmp_path / "a.jpg", rgb))
    assert out.shape == (32, 32, 3)
    assert np.abs(out.astype(int) - rgb).mean() < 5  # swapped channels would be ~100 off


def test_read_gray_is_replicated_to_three_channels(tmp_path):
    gray = np.arange(12 * 16, dtype=np.uint8).reshape(12, 16)
    assert cv2.imwrite(str(tmp_path / "g.png"), gray)
    out = read_image(tmp_path / "g.png")
    assert out.shape == (12, 16, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)


def test_read_16_bit_keeps_the_high_byte(tmp_path):
    gray16 = np.full((4, 6), 0xAB12, np.uint16)
    assert cv2.imwrite(str(tmp_path / "d.png"), gray16)
    out = read_image(tmp_path / "d.png")
    assert out.dtype == np.uint8 and (out == 0xAB).all()


def test_read_rgba_drops_alpha(tmp_path):
    bgra = np.empty((5, 7, 4), np.uint8)
    bgra[...] = [30, 100, 200, 17]  # B, G, R, A
    assert cv2.imwrite(str(tmp_path / "t.png"), bgra)
    out = read_image(tmp_path / "t.png")
    assert out.shape == (5, 7, 3)
    assert (out == RED_GREEN_BLUE).all()


def test_missing_file_raises_naming_the_path(tmp_path):
    path = tmp_path / "nope.png"
    with pytest.raises(InputError, match=rf"{path}: no such file"):
        read_image(path)


def test_folder_given_as_image_raises(tmp_path):
    with pytest.raises(InputError, match=rf"{tmp_path}: is a folder"):
        read_image(tmp_path)


def test_corrupt_image_raises_naming_the_path(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG this is not really a png")
    with pytest.raises(InputError, match=rf"{path}: not a readable image"):
        read_image(path)


# -- listing inputs -------------------------------------------------------------------------------


@pytest.fixture
def folder(tmp_path) -> Path:
    for name in ("b.png", "a.JPG", "c.bmp"):  # suffixes are matched case-insensitively
        _write_bgr(tmp_path / name, _rgb_image())
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "sub.png").mkdir()  # not a file, although it is named like one
    return tmp_path


def test_list_inputs_of_a_single_file(folder):
    assert list_inputs(str(folder / "b.png")) == ("image", [folder / "b.png"])


def test_list_inputs_of_a_folder_keeps_images_sorted(folder):
    kind, paths = list_inputs(str(folder))
    assert kind == "image"
    assert [p.name for p in paths] == ["a.JPG", "b.png", "c.bmp"]


def test_list_inputs_of_a_glob(folder):
    kind, paths = list_inputs(str(folder / "[bc].*"))
    assert (kind, [p.name for p in paths]) == ("image", ["b.png", "c.bmp"])
    assert list_inputs(str(folder / "*.png")) == ("image", [folder / "b.png"])  # not sub.png/


def test_list_inputs_errors_name_the_input(tmp_path):
    with pytest.raises(InputError, match=rf"{tmp_path}: the folder holds no image files"):
        list_inputs(str(tmp_path))
    with pytest.raises(InputError, match=r"the pattern matches no image files"):
        list_inputs(str(tmp_path / "*.png"))
    with pytest.raises(InputError, match=r"missing\.png: no such file or folder"):
        list_inputs(str(tmp_path / "missing.png"))


def test_iter_images_of_a_folder_names_frames_by_stem(folder):
    frames = list(iter_images(str(folder)))
    assert [f.name for f in frames] == ["a", "b", "c"]
    np.testing.assert_array_equal(frames[1].rgb, _rgb_image())


def test_iter_images_of_a_video_yields_every_frame_in_rgb(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (32, 24))
    assert writer.isOpened()
    for i in range(5):
        rgb = np.zeros((24, 32, 3), np.uint8)
        rgb[..., 0] = 40 * (i + 1)  # red ramps up frame by frame
        rgb[..., 2] = 20
        writer.write(np.ascontiguousarray(rgb[..., ::-1]))
    writer.release()

    assert list_inputs(str(path)) == ("video", [path])
    assert count_frames(str(path)) == 5
    frames = list(iter_images(str(path)))
    assert [f.name for f in frames] == [f"clip_{i:06d}" for i in range(5)]
    for i, frame in enumerate(frames):
        assert frame.rgb.shape == (24, 32, 3)
        mean = frame.rgb.reshape(-1, 3).mean(axis=0)
        np.testing.assert_allclose(mean, [40 * (i + 1), 0, 20], atol=6)


def test_unreadable_video_raises(tmp_path):
    path = tmp_path / "broken.mp4"
    path.write_bytes(b"not a video")
    with pytest.raises(InputError, match=r"broken\.mp4"):
        list(iter_images(str(path)))


# -- writing depth --------------------------------------------------------------------------------

NEAR, FAR = 0.5, 5.0


def _depth() -> np.ndarray:
    depth = np.linspace(NEAR, FAR, 6 * 8, dtype=np.float32).reshape(6, 8)
    depth[0, 1] = np.nan
    depth[0, 2] = 0.0
    return depth


def test_write_depth_png8_is_bright_near_dark_far_and_zero_invalid(tmp_path):
    path = write_depth(tmp_path / "d8.jpg", _depth(), "png8")
    assert path == tmp_path / "d8.png"  # the suffix follows the format
    gray = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert gray.dtype == np.uint8 and gray.shape == (6, 8)
    assert gray[0, 0] > gray[3, 4] > gray[5, 7] >= 1  # near is brighter
    assert gray[0, 1] == 0 and gray[0, 2] == 0  # NaN and 0 m are invalid


def test_write_depth_png16_is_millimetres(tmp_path):
    depth = _depth()
    path = write_depth(tmp_path / "d16", depth, "png16")
    mm = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert mm.dtype == np.uint16 and mm.shape == (6, 8)
    assert mm[0, 0] == 500 and mm[5, 7] == 5000
    assert mm[0, 1] == 0 and mm[0, 2] == 0
    valid = np.isfinite(depth) & (depth > 0)
    np.testing.assert_allclose(mm[valid] / 1000.0, depth[valid], atol=5e-4)


def test_write_depth_png16_beyond_the_uint16_range_is_invalid(tmp_path):
    path = write_depth(tmp_path / "far", np.array([[65.535, 65.6, -1.0]], np.float32), "png16")
    np.testing.assert_array_equal(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), [[65535, 0, 0]])


def test_write_depth_npy_keeps_metres_and_nan(tmp_path):
    depth = _depth()
    path = write_depth(tmp_path / "out" / "d.png", depth, "npy")
    assert path == tmp_path / "out" / "d.npy"
    back = np.load(path)
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, depth)


def test_write_depth_color_is_rgb_with_black_invalid(tmp_path):
    path = write_depth(tmp_path / "c", _depth(), "color")
    rgb = read_image(path)
    assert rgb.shape == (6, 8, 3)
    assert (rgb[0, 1] == 0).all() and (rgb[0, 2] == 0).all()
    assert np.abs(rgb[0, 0].astype(int) - rgb[5, 7]).sum() > 100  # near and far look different


def test_write_depth_unknown_format_raises(tmp_path):
    assert DEPTH_FORMATS == ("png8", "png16", "npy", "color")
    with pytest.raises(ValueError, match=r"unknown depth format 'exr'"):
        write_depth(tmp_path / "d", _depth(), "exr")


# -- PLY ------------------------------------------------------------------------------------------


def test_ply_round_trips_points_colours_and_normals_without_nan(tmp_path):
    rng = np.random.default_rng(0)
    xyz = rng.uniform(-1, 1, (4, 5, 3)).astype(np.float32)
    xyz[1, 2] = np.nan
    xyz[3, 0, 2] = np.nan  # one NaN coordinate is enough to drop a point
    rgb = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    normals = rng.normal(size=(4, 5, 3)).astype(np.float32)

    n = write_ply(tmp_path / "cloud" / "c.ply", xyz, rgb=rgb, normals=normals)
    assert n == 18
    ply = read_ply(tmp_path / "cloud" / "c.ply")
    assert ply.dtype.names == ("x", "y", "z", "nx", "ny", "nz", "red", "green", "blue")
    assert len(ply) == 18

    keep = np.isfinite(xyz).all(axis=-1)
    np.testing.assert_array_equal(np.stack([ply["x"], ply["y"], ply["z"]], -1), xyz[keep])
    np.testing.assert_array_equal(np.stack([ply["nx"], ply["ny"], ply["nz"]], -1), normals[keep])
    np.testing.assert_array_equal(np.stack([ply["red"], ply["green"], ply["blue"]], -1), rgb[keep])


def test_ply_header_is_standard_binary_little_endian(tmp_path):
    write_ply(tmp_path / "p.ply", np.array([[0.0, 1.0, 2.0]]))
    data = (tmp_path / "p.ply").read_bytes()
    header, body = data.split(b"end_header\n")
    assert header.decode().splitlines() == [
        "ply", "format binary_little_endian 1.0", "element vertex 1",
        "property float x", "property float y", "property float z",
    ]
    np.testing.assert_array_equal(np.frombuffer(body, "<f4"), [0.0, 1.0, 2.0])


def test_read_ply_refuses_ascii_ply(tmp_path):
    path = tmp_path / "a.ply"
    path.write_bytes(b"ply\nformat ascii 1.0\nelement vertex 0\nend_header\n")
    with pytest.raises(InputError, match=r"a\.ply: not a binary little-endian PLY"):
        read_ply(path)


def test_images_over_the_pixel_limit_are_refused_with_their_size(tmp_path):
    from depth_perception.files import InputError, read_image, write_image

    path = tmp_path / "wide.png"
    write_image(path, np.zeros((200, 300, 3), np.uint8))
    assert read_image(path, max_pixels=60_000).shape == (200, 300, 3)
    with pytest.raises(InputError, match=r"300x200 = 0.1 MP is over the limit of 0.1 MP"):
        read_image(path, max_pixels=59_999)


def test_atomic_output_appears_only_on_success(tmp_path):
    from depth_perception.files import atomic_output

    target = tmp_path / "out.npy"
    with pytest.raises(RuntimeError):
        with atomic_output(target) as tmp:
            np.save(tmp, np.zeros(3))
            raise RuntimeError("killed half way")
    assert list(tmp_path.iterdir()) == []
    with atomic_output(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".npy"
        np.save(tmp, np.ones(3))
    assert np.load(target).tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(FileExistsError, match="--overwrite"):
        with atomic_output(target):
            pass
    with atomic_output(target, overwrite=True) as tmp:
        np.save(tmp, np.zeros(2))
    assert np.load(target).tolist() == [0.0, 0.0] and len(list(tmp_path.iterdir())) == 1
