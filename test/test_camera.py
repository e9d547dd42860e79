"""CameraModel: the pinhole geometry of CameraInfo, checked against image_geometry's formulas and
OpenCV's own distortion models (cv2.projectPoints is the ground truth for "distorted pixel")."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from depth_perception.camera import CameraModel, Roi

K_SMALL = np.array([[100.0, 0.0, 80.0], [0.0, 100.0, 60.0], [0.0, 0.0, 1.0]])
DISTORTIONS = {
    "plumb_bob": [-0.25, 0.08, 0.001, -0.0005, 0.0],
    "rational_polynomial": [-0.2, 0.05, 0.001, -0.001, 0.0, 0.1, 0.01, 0.0],
    "equidistant": [0.05, -0.01, 0.002, -0.0005],
}


def _distorted_camera(model: str) -> CameraModel:
    return CameraModel(160, 120, K_SMALL, np.array(DISTORTIONS[model]), model)


def _distort(model: str, xyz: np.ndarray) -> np.ndarray:
    """Nx3 camera-frame points → Nx2 raw (distorted) pixels, by OpenCV."""
    pts = np.asarray(xyz, np.float64).reshape(-1, 1, 3)
    D = np.array(DISTORTIONS[model])
    if model == "equidistant":
        uv, _ = cv2.fisheye.projectPoints(pts, np.zeros(3), np.zeros(3), K_SMALL, D)
    else:
        uv, _ = cv2.projectPoints(pts, np.zeros(3), np.zeros(3), K_SMALL, D)
    return uv.reshape(-1, 2)


def _bilinear(field: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Sample an HxWxC field at Nx2 sub-pixel positions (exact arithmetic, unlike cv2.remap's
    1/32-pixel fixed point)."""
    u, v = uv[:, 0].astype(np.float64), uv[:, 1].astype(np.float64)
    u0 = np.clip(np.floor(u).astype(int), 0, field.shape[1] - 2)
    v0 = np.clip(np.floor(v).astype(int), 0, field.shape[0] - 2)
    a, b = (u - u0)[:, None], (v - v0)[:, None]
    f = field.astype(np.float64)
    top = f[v0, u0] * (1 - a) + f[v0, u0 + 1] * a
    bottom = f[v0 + 1, u0] * (1 - a) + f[v0 + 1, u0 + 1] * a
    return top * (1 - b) + bottom * b


def _pixel_grid(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    return np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))


# -- construction and validation ------------------------------------------------------------------


def test_from_intrinsics_is_an_undistorted_pinhole_with_p_equal_to_k():
    cam = CameraModel.from_intrinsics(500.0, 510.0, 319.5, 239.5, 640, 480)
    assert (cam.fx, cam.fy, cam.cx, cam.cy) == (500.0, 510.0, 319.5, 239.5)
    assert cam.size == (640, 480)
    np.testing.assert_array_equal(cam.P, np.hstack([cam.K, np.zeros((3, 1))]))
    np.testing.assert_array_equal(cam.R, np.eye(3))
    assert cam.D.size == 0 and not cam.is_distorted
    assert cam.baseline_m == 0.0
    assert cam.effective() is cam  # no binning, no ROI: nothing to derive


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"K": [[0, 0, 80], [0, 100, 60], [0, 0, 1]]}, r"fx, fy > 0"),
        ({"K": [[100, 0, 80], [0, -1, 60], [0, 0, 1]]}, r"fx, fy > 0"),
        ({"K": [[100, 0, 80], [0, 100, 60], [0, 0, 2]]}, r"not an intrinsic matrix"),
        ({"width": 0}, r"size must be positive, got 0x120"),
        ({"D": [0.1, 0.0, 0.0, 0.0]}, r"'plumb_bob' needs 5 coefficients, got 4"),
        (
            {"D": [0.1, 0.0, 0.0, 0.0, 0.0], "distortion_model": "rational_polynomial"},
            r"'rational_polynomial' needs 8 coefficients, got 5",
        ),
        ({"D": [0.1, 0.0, 0.0], "distortion_model": "equidistant"}, r"'equidistant' needs 4"),
        ({"D": [0.1, 0.0, 0.0, 0.0], "distortion_model": "kannala"}, r"unsupported .*'kannala'"),
        ({"D": [0.1, np.nan, 0.0, 0.0, 0.0]}, r"D must be finite"),
        ({"binning_x": -1}, r"binning"),
    ],
)
def test_invalid_camera_raises_value_error_naming_the_problem(kwargs, message):
    args = {"width": 160, "height": 120, "K": K_SMALL} | kwargs
    with pytest.raises(ValueError, match=message):
        CameraModel(**args)


# -- derived cameras ------------------------------------------------------------------------------


def test_effective_applies_binning_and_roi_like_image_geometry():
    fx, fy, cx, cy, tx = 1200.0, 1210.0, 660.0, 470.0, -1200.0 * 0.1
    K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]])
    P = np.array([[fx, 0, cx, tx], [0, fy, cy, 0], [0, 0, 1, 0]])
    roi = Roi(x_offset=100, y_offset=60, height=480, width=640)
    cam = CameraModel(1280, 960, K, P=P, binning_x=2, binning_y=2, roi=roi).effective()

    # image_geometry: f / binning, (c - roi offset) / binning, size = roi size / binning.
    assert cam.size == (320, 240)
    np.testing.assert_allclose(
        [cam.fx, cam.fy, cam.cx, cam.cy], [fx / 2, fy / 2, (cx - 100) / 2, (cy - 60) / 2]
    )
    np.testing.assert_allclose(cam.P[:, :3], cam.K)
    assert cam.P[0, 3] == pytest.approx(tx / 2)
    assert cam.baseline_m == pytest.approx(0.1)  # binning does not change the stereo baseline
    # The derived model describes the published image directly, so deriving again is a no-op.
    assert (cam.binning_x, cam.binning_y, cam.roi) == (0, 0, Roi())
    assert cam.effective() is cam


def test_effective_with_binning_only_keeps_the_full_field_of_view():
    cam = CameraModel(640, 480, [[500, 0, 320], [0, 500, 240], [0, 0, 1]], binning_x=2, binning_y=4)
    eff = cam.effective()
    assert eff.size == (320, 120)
    np.testing.assert_allclose([eff.fx, eff.fy, eff.cx, eff.cy], [250, 125, 160, 60])


def test_scaled_maps_pixel_centres_consistently():
    cam = CameraModel.from_intrinsics(500.0, 500.0, 319.5, 239.5, 640, 480)
    rng = np.random.default_rng(0)
    xyz = np.column_stack([rng.uniform(-1, 1, (50, 2)), rng.uniform(1, 5, 50)])
    uv = cam.project(xyz)
    for width, height in [(320, 240), (320, 360), (1280, 960)]:
        s = np.array([width / 640, height / 480])
        scaled = cam.scaled(width, height)
        assert scaled.size == (width, height)
        # u' = (u + 0.5)·s − 0.5: pixel edges (not centres) scale with the image
        np.testing.assert_allclose(scaled.project(xyz), (uv + 0.5) * s - 0.5, atol=1e-9)
    assert cam.scaled(640, 480) is cam
    with pytest.raises(ValueError, match="0x240"):
        cam.scaled(0, 240)


def test_cropped_shifts_the_principal_point_by_the_crop_origin():
    cam = CameraModel.from_intrinsics(500.0, 500.0, 319.5, 239.5, 640, 480)
    crop = cam.cropped(100, 50, 200, 150)
    assert crop.size == (200, 150)
    xyz = np.array([[0.1, -0.2, 2.0], [-0.3, 0.05, 1.0]])
    np.testing.assert_allclose(crop.project(xyz), cam.project(xyz) - [100, 50])

    image = np.arange(480 * 640).reshape(480, 640)
    crop.check_image(image[50:200, 100:300])  # the crop it describes has the right size


def test_baseline_from_the_right_camera_projection_matrix():
    fx, baseline = 700.0, 0.12
    P = np.array([[fx, 0, 320, -fx * baseline], [0, fx, 240, 0], [0, 0, 1, 0]])
    right = CameraModel(640, 480, P[:, :3], P=P)
    assert right.baseline_m == pytest.approx(baseline)


# -- back-projection and projection -------------------------------------------------------------


@pytest.mark.parametrize(
    "cam",
    [
        CameraModel.from_intrinsics(120.0, 110.0, 31.5, 23.5, 64, 48),
        CameraModel(64, 48, [[120.0, 2.5, 30.0], [0.0, 110.0, 25.0], [0.0, 0.0, 1.0]]),  # skew
        CameraModel(
            128, 96, [[240.0, 0, 70.0], [0, 220.0, 52.0], [0, 0, 1]], binning_x=2, binning_y=2,
            roi=Roi(x_offset=4, y_offset=2, height=90, width=120),
        ),
    ],
    ids=["pinhole", "skew", "binned-roi"],
)
def test_backproject_then_project_returns_every_pixel(cam):
    eff = cam.effective()
    rng = np.random.default_rng(1)
    depth = rng.uniform(0.3, 8.0, (eff.height, eff.width)).astype(np.float32)
    cloud = cam.backproject(depth)
    assert cloud.shape == (eff.height, eff.width, 3) and cloud.dtype == np.float32
    np.testing.assert_array_equal(cloud[..., 2], depth)  # depth is z, not range

    uv = cam.project(cloud.reshape(-1, 3)).reshape(eff.height, eff.width, 2)
    u, v = _pixel_grid(eff.width, eff.height)
    np.testing.assert_allclose(uv[..., 0], u, atol=2e-3)
    np.testing.assert_allclose(uv[..., 1], v, atol=2e-3)


def test_nan_depth_gives_nan_points_and_points_behind_give_nan_pixels():
    cam = CameraModel.from_intrinsics(50.0, 50.0, 15.5, 11.5, 32, 24)
    depth = np.full((24, 32), 2.0, np.float32)
    depth[3, 4] = np.nan
    cloud = cam.backproject(depth, rays=cam.normalized_rays())
    assert np.isnan(cloud[3, 4]).all()
    assert np.isfinite(np.delete(cloud.reshape(-1, 3), 3 * 32 + 4, axis=0)).all()

    uv = cam.project(np.array([[0.0, 0.0, -1.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))
    assert np.isnan(uv[:2]).all()
    np.testing.assert_allclose(uv[2], [15.5, 11.5])


def test_backproject_rejects_a_depth_image_of_another_size():
    cam = CameraModel.from_intrinsics(50.0, 50.0, 15.5, 11.5, 32, 24)
    with pytest.raises(ValueError, match=r"depth is 16x12 but CameraInfo describes 32x24"):
        cam.backproject(np.ones((12, 16), np.float32))


def test_check_image_names_both_sizes():
    cam = CameraModel.from_intrinsics(500.0, 500.0, 319.5, 239.5, 640, 480)
    cam.check_image(np.zeros((480, 640, 3), np.uint8))
    with pytest.raises(ValueError, match=r"image is 320x240 but CameraInfo describes 640x480"):
        cam.check_image(np.zeros((240, 320, 3), np.uint8))


# -- distortion -----------------------------------------------------------------------------------


@pytest.mark.parametrize("model", list(DISTORTIONS))
def test_normalized_rays_redistort_onto_their_own_pixels(model):
    """The ray of pixel (u, v), distorted again by OpenCV, lands on (u, v)."""
    cam = _distorted_camera(model)
    rays = cam.normalized_rays()
    assert rays.shape == (120, 160, 2) and rays.dtype == np.float32
    xyz = np.concatenate([rays.reshape(-1, 2).astype(np.float64), np.ones((160 * 120, 1))], axis=1)
    uv = _distort(model, xyz)
    u, v = _pixel_grid(160, 120)
    err = np.hypot(uv[:, 0] - u.ravel(), uv[:, 1] - v.ravel())
    assert err.max() < 1e-3, f"{model}: worst pixel off by {err.max():.4f} px"


@pytest.mark.parametrize("model", list(DISTORTIONS))
def test_normalized_rays_recover_the_direction_of_distorted_projections(model):
    """Points projected through OpenCV's distortion: the ray field at that (sub-)pixel is x/z, y/z."""
    cam = _distorted_camera(model)
    rng = np.random.default_rng(2)
    xy = rng.uniform([-0.6, -0.45], [0.6, 0.45], (200, 2))
    z = rng.uniform(0.5, 4.0, (200, 1))
    uv = _distort(model, np.concatenate([xy * z, z], axis=1))
    inside = (uv[:, 0] >= 0) & (uv[:, 0] <= 159) & (uv[:, 1] >= 0) & (uv[:, 1] <= 119)
    assert inside.sum() > 100
    sampled = _bilinear(cam.normalized_rays(), uv[inside])
    # 5e-5 is 0.005 px at f = 100 px: the curvature error of bilinear sampling, nothing more.
    np.testing.assert_allclose(sampled, xy[inside], atol=5e-5)


def test_distorted_rays_differ_from_the_pinhole_rays():
    """A sanity check that distortion is not silently ignored."""
    undistorted = CameraModel(160, 120, K_SMALL).normalized_rays()
    distorted = _distorted_camera("plumb_bob").normalized_rays()
    assert np.abs(distorted - undistorted).max() > 0.05


def test_rectify_image_of_an_undistorted_camera_is_the_identity():
    cam = CameraModel(160, 120, K_SMALL)
    image = np.random.default_rng(3).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    out = cam.rectify_image(image)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - image).max() <= 1


def _checkerboard(u: np.ndarray, v: np.ndarray, square_px: float = 16.0) -> np.ndarray:
    """A smooth (anti-aliased) checkerboard as a function of rectified pixel coordinates."""
    s = np.sin(np.pi * u / square_px) * np.sin(np.pi * v / square_px)
    return 128.0 + 100.0 * np.tanh(2.0 * s)


def test_rectify_image_undoes_opencv_distortion_of_a_checkerboard():
    cam = _distorted_camera("plumb_bob")
    u, v = _pixel_grid(160, 120)
    # Render the raw image: each raw pixel shows the checkerboard at its undistorted position.
    pix = np.stack([u, v], axis=-1).reshape(-1, 1, 2)
    rect = cv2.undistortPoints(pix, cam.K, cam.D, P=cam.K).reshape(120, 160, 2)
    raw = _checkerboard(rect[..., 0], rect[..., 1]).round().astype(np.uint8)
    ideal = _checkerboard(u, v)

    out = cam.rectify_image(raw).astype(np.float64)
    map_x, map_y = cam.rectify_maps()
    valid = (map_x >= 1) & (map_x <= 158) & (map_y >= 1) & (map_y <= 118)
    assert valid.mean() > 0.8  # barrel distortion: the rectified view lies inside the raw one
    err = np.abs(out - ideal)[valid]
    assert err.mean() < 1.5 and err.max() < 8, (err.mean(), err.max())  # grey levels of 0..255
    assert np.abs(raw - ideal)[valid].mean() > 30  # the distortion was large, and it is gone


@pytest.mark.parametrize("topic, rectified", [
    ("/camera/image_rect", True), ("/camera/color/image_rect_color", True),
    ("/cam/image_rect_color/compressed", True), ("/camera/image_raw", False),
    ("/cam/image_raw/compressed", False), ("/camera/image_color", False),
    ("/camera/image", None), ("image", None), ("/", None)])
def test_topic_names_say_whether_an_image_is_rectified(topic, rectified):
    from depth_perception.camera import rectified_topic

    assert rectified_topic(topic) is rectified


@pytest.mark.parametrize("setting, stereo, hint, rectify, expected", [
    ("rectified", False, False, False, "rectified"), ("raw", True, True, False, "raw"),
    ("auto", False, True, False, "rectified"), ("auto", True, False, False, "raw"),
    ("auto", True, None, False, "rectified"), ("auto", False, None, False, "raw"),
    ("auto", True, None, True, "raw")])
def test_image_geometry_follows_the_setting_then_the_topic_then_the_kind_of_input(
        setting, stereo, hint, rectify, expected):
    from depth_perception.camera import image_geometry

    assert image_geometry(setting, stereo, hint, rectify) == expected


def test_the_rectified_model_is_P_without_distortion():
    P = np.array([[500.0, 0, 330, -30.0], [0, 500.0, 242, 0], [0, 0, 1, 0]])
    R = np.array([[1, 0, 0], [0, np.cos(0.02), -np.sin(0.02)], [0, np.sin(0.02), np.cos(0.02)]])
    cam = CameraModel(width=640, height=480, K=np.array([[520.0, 0, 320], [0, 521, 240], [0, 0, 1]]),
                      D=[-0.3, 0.1, 0, 0, 0], R=R, P=P)
    rect = cam.rectified()
    assert np.allclose(rect.K, P[:, :3]) and rect.D.size == 0 and np.allclose(rect.R, np.eye(3))
    assert np.allclose(rect.P, P) and rect.baseline_m == pytest.approx(0.06)
    assert rect.rectification_is_identity and not cam.rectification_is_identity
    assert "rays from P" in cam.describe("rectified") and "plumb_bob" in cam.describe("raw")
