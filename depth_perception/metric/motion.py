"""Stage 1, the ``motion`` signal: metric depth from the robot's own motion (one camera, no depth
sensor).

Odometry (wheels, VIO, TF odom → base) is metric. Two views of the scene from poses a known
distance apart fix the scale that a single image cannot: features tracked from a *keyframe* to the
current frame are triangulated with the *known* relative pose, and their depths in the current frame
are sparse metric samples like a depth sensor's (HxW float32 metres, NaN elsewhere), fitted by
:class:`~depth_perception.metric.MetricAligner` as in ``sparse_depth`` mode.

- :class:`MotionParams`: the ``metric.motion.*`` parameters.
- :class:`PoseBuffer`: bounded buffer of (stamp_ns, T_odom_base 4x4) odometry poses;
  :meth:`PoseBuffer.interpolate` gives T_odom_camera (4x4, the camera optical frame in odom,
  extrinsic T_base_camera applied) at an image stamp: linear in translation, slerp in rotation,
  None outside the buffer or across a gap longer than ``max_pose_gap``.
- :class:`MotionTracker` (per-stream state): ``update(image, camera, T_odom_camera, stamp_ns)`` →
  :class:`MotionSample`: keyframes chosen by baseline (translation >= ``min_baseline``, rotation
  <= ``max_rotation``), KLT tracks (``goodFeaturesToTrack`` + pyramidal ``calcOpticalFlowPyrLK``,
  forward-backward checked) from the keyframe, pixels undistorted with the camera model,
  ``cv2.triangulatePoints`` with the odometry's relative pose, then parallax, reprojection-error
  and cheirality (in front of both cameras) checks. A cross-check estimates the translation
  direction from the tracks alone (``cv2.findEssentialMat`` + ``recoverPose``) and compares it with
  the odometry's: a wrong extrinsic or a wrong odometry frame shows up as a large angle, and the
  sample is then refused.
- :class:`MotionSignal`: the sample's depth as the aligner's signal (``metric.mode motion``).

Conventions: T_a_b maps points of frame b into frame a (x_a = T_a_b @ x_b); camera frames are REP 103
optical frames (x right, y down, z forward); stamps are integer nanoseconds.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, replace

import cv2
import numpy as np

from ..camera import CameraModel
from ..params import check_fields, param
from .signals import _as_transform, project_points

_NAN = float("nan")


def _identity16() -> tuple[float, ...]:
    return tuple(np.eye(4).reshape(-1).tolist())


@dataclass(frozen=True)
class MotionParams:
    """Settings of :class:`PoseBuffer` and :class:`MotionTracker` (``metric.motion.*``)."""

    T_base_camera: tuple[float, ...] = param(
        _identity16(), "16 values, row-major 4x4 pose of the camera optical frame in the "
        "odometry's base frame (x_base = T_base_camera x_camera; TF is not used)")
    min_baseline: float = param(0.05, "camera translation since the keyframe before depth is "
                                "triangulated, metres", minimum=0.001, maximum=100.0)
    max_rotation: float = param(30.0, "largest camera rotation from the keyframe; more starts a "
                                "new keyframe, degrees", minimum=0.1, maximum=90.0)
    max_features: int = param(500, "corners tracked from each keyframe", minimum=10,
                              maximum=100_000, step=1)
    min_points: int = param(30, "fewest triangulated points for a motion sample", minimum=5,
                            maximum=100_000, step=1)
    min_parallax: float = param(1.0, "smallest angle between a point's two viewing rays, degrees",
                                minimum=0.0, maximum=90.0)
    max_reprojection: float = param(1.0, "largest reprojection error of a triangulated point in "
                                    "either view, pixels", minimum=0.01, maximum=100.0)
    max_pose_gap: float = param(0.2, "longest gap between two odometry poses interpolated across, "
                                "seconds", minimum=0.0, maximum=60.0)
    pose_buffer: int = param(1000, "odometry poses kept for interpolation", minimum=2,
                             maximum=1_000_000, step=1)
    cross_check_angle: float = param(
        15.0, "largest angle between the odometry's translation direction and the one the "
        "tracks give (essential matrix) before a sample is refused as inconsistent (wrong "
        "extrinsic?), degrees; 0 disables the check", minimum=0.0, maximum=180.0)

    def __post_init__(self) -> None:
        check_fields(self, "metric.motion")
        T = _as_transform(self.T_base_camera)
        if not np.allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-4):
            raise ValueError("metric.motion T_base_camera's 3x3 block must be a rotation matrix")
        object.__setattr__(self, "T_base_camera", tuple(T.reshape(-1).tolist()))

    @property
    def T_base_camera_matrix(self) -> np.ndarray:
        """4x4 float64 of :attr:`T_base_camera`."""
        return np.asarray(self.T_base_camera, dtype=np.float64).reshape(4, 4)


def _check_pose(T, what: str) -> np.ndarray:
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4) or not np.isfinite(T).all() or not np.allclose(T[3], [0, 0, 0, 1]):
        raise ValueError(f"{what} must be a finite 4x4 homogeneous transform, got shape {T.shape}")
    if not np.allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-4):
        raise ValueError(f"{what}'s 3x3 block is not a rotation matrix")
    return T


class PoseBuffer:
    """Bounded, stamp-ordered buffer of odometry poses (stamp_ns, T_odom_base 4x4) for one stream.

    ``T_base_camera`` (4x4, or 16 values row-major) is the camera extrinsic; :meth:`interpolate`
    returns T_odom_camera = T_odom_base(stamp) @ T_base_camera. The oldest pose is dropped beyond
    ``capacity``; poses may arrive out of order (they are inserted by stamp; a repeated stamp
    replaces the pose). Not thread-safe.
    """

    def __init__(self, capacity: int = 1000, max_gap_s: float = 0.2, T_base_camera=None) -> None:
        if capacity < 2:
            raise ValueError(f"PoseBuffer capacity must be >= 2, got {capacity}")
        if not max_gap_s >= 0:
            raise ValueError(f"max_gap_s must be >= 0, got {max_gap_s!r}")
        self.capacity = int(capacity)
        self.max_gap_ns = int(round(max_gap_s * 1e9))
        self.T_base_camera = np.eye(4) if T_base_camera is None else \
            _check_pose(_as_transform(T_base_camera), "T_base_camera")
        self._stamps: list[int] = []
        self._poses: list[np.ndarray] = []

    @classmethod
    def from_params(cls, params: MotionParams) -> PoseBuffer:
        return cls(params.pose_buffer, params.max_pose_gap, params.T_base_camera_matrix)

    def __len__(self) -> int:
        return len(self._stamps)

    def add(self, stamp_ns: int, T_odom_base) -> None:
        """Store one odometry pose (4x4 T_odom_base; ValueError for anything else)."""
        T = _check_pose(T_odom_base, "odometry pose T_odom_base")
        stamp = int(stamp_ns)
        i = bisect.bisect_left(self._stamps, stamp)
        if i < len(self._stamps) and self._stamps[i] == stamp:
            self._poses[i] = T
            return
        self._stamps.insert(i, stamp)
        self._poses.insert(i, T)
        if len(self._stamps) > self.capacity:
            del self._stamps[0], self._poses[0]

    def lookup(self, stamp_ns: int) -> tuple[np.ndarray | None, str]:
        """(T_odom_camera 4x4 at ``stamp_ns``, "") or (None, why there is none)."""
        from scipy.spatial.transform import Rotation, Slerp

        s = self._stamps
        t = int(stamp_ns)
        if not s:
            return None, "no odometry pose received yet"
        if t < s[0] or t > s[-1]:
            side = f"{(s[0] - t) / 1e9:.3f} s before the oldest" if t < s[0] else \
                f"{(t - s[-1]) / 1e9:.3f} s after the newest"
            return None, f"image stamp {side} odometry pose (no extrapolation)"
        i = bisect.bisect_left(s, t)
        if s[i] == t:
            return self._poses[i] @ self.T_base_camera, ""
        t0, t1 = s[i - 1], s[i]
        if t1 - t0 > self.max_gap_ns:
            return None, (f"odometry gap of {(t1 - t0) / 1e9:.3f} s around the image stamp > "
                          f"max_pose_gap {self.max_gap_ns / 1e9:g} s")
        a = (t - t0) / (t1 - t0)
        P0, P1 = self._poses[i - 1], self._poses[i]
        T = np.eye(4)
        T[:3, :3] = Slerp([0.0, 1.0], Rotation.from_matrix(np.stack([P0[:3, :3], P1[:3, :3]])))(a).as_matrix()
        T[:3, 3] = (1.0 - a) * P0[:3, 3] + a * P1[:3, 3]
        return T @ self.T_base_camera, ""

    def interpolate(self, stamp_ns: int) -> np.ndarray | None:
        """T_odom_camera (4x4 float64) at ``stamp_ns``, or None outside the buffer or across a gap
        longer than ``max_gap_s`` (see :meth:`lookup` for the reason)."""
        return self.lookup(stamp_ns)[0]


@dataclass(frozen=True)
class CrossCheck:
    """The tracks' own translation direction (essential matrix) against the odometry's.

    angle_deg: angle between the two unit directions, degrees (NaN when the essential matrix could
    not be estimated). agrees: angle <= the tolerance (True when unavailable: nothing contradicts).
    n_inliers: tracks consistent with the essential matrix. reason: one line.
    """

    angle_deg: float
    agrees: bool
    n_inliers: int
    reason: str


@dataclass(frozen=True)
class MotionSample:
    """One frame's motion measurement.

    depth_m: HxW float32 metric depth at the tracked pixels of the *current* frame (rounded to the
    nearest pixel), NaN elsewhere; None when the frame gave none (``status`` says why).
    status: one line ("ok: 143 points, baseline 0.12 m", "no motion since the keyframe",
    "pure rotation ...", "no pose for this frame", ...). ok: depth_m is not None.
    baseline_m / rotation_deg: camera motion since the keyframe (NaN without a pose or keyframe).
    n_points: triangulated points kept. cross_check: None when not run. keyframe: this frame became
    the new keyframe.
    """

    depth_m: np.ndarray | None
    status: str
    baseline_m: float = _NAN
    rotation_deg: float = _NAN
    n_points: int = 0
    cross_check: CrossCheck | None = None
    keyframe: bool = False

    @property
    def ok(self) -> bool:
        return self.depth_m is not None


@dataclass(frozen=True)
class MotionSignal:
    """A :class:`MotionSample` as the aligner's signal: ``depth_m`` HxW float32 metres (NaN = no
    sample; any size, resampled to the prediction grid) or None when this frame gave none, and the
    tracker's ``status`` (reported in the metric message)."""

    depth_m: np.ndarray | None
    status: str = ""

    @classmethod
    def from_sample(cls, sample: MotionSample) -> MotionSignal:
        return cls(sample.depth_m, sample.status)


@dataclass
class _Keyframe:
    gray: np.ndarray  # HxW uint8
    T_odom_camera: np.ndarray  # 4x4
    stamp_ns: int
    corners: np.ndarray  # Nx1x2 float32 pixel coordinates
    camera_key: tuple


def _gray(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError("motion tracking needs an HxW or HxWx3 uint8 image, got "
                         f"{getattr(image, 'shape', type(image).__name__)} "
                         f"{getattr(image, 'dtype', '')}")
    if image.ndim == 3:
        if image.shape[2] != 3:
            raise ValueError(f"motion tracking needs an HxW or HxWx3 image, got shape {image.shape}")
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return image


def _camera_key(cam: CameraModel) -> tuple:
    return (cam.width, cam.height, cam.K.tobytes(), cam.D.tobytes(), cam.distortion_model)


def normalized_points(camera: CameraModel, uv: np.ndarray) -> np.ndarray:
    """Nx2 pixel coordinates of ``camera``'s image → Nx2 normalised coordinates (x/z, y/z) of their
    rays in the camera's own frame, distortion removed (the inverse of :func:`project_points`)."""
    from ..rectify import rectify_points

    cam = camera.effective()
    # rectify_points maps to P's image after R: with R = I and P = [I | 0] that is the ray itself
    ray_cam = replace(cam, R=np.eye(3), P=np.hstack([np.eye(3), np.zeros((3, 1))]))
    return rectify_points(ray_cam, uv)


def _relative(T_odom_key: np.ndarray, T_odom_cur: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    """(R, t) with x_cur = R x_key + t, the baseline |t| (m) and the rotation angle (deg)."""
    T = np.linalg.inv(T_odom_cur) @ T_odom_key
    R, t = T[:3, :3], T[:3, 3]
    angle = float(np.degrees(np.arccos(np.clip((np.trace(R) - 1.0) / 2.0, -1.0, 1.0))))
    return R, t, float(np.linalg.norm(t)), angle


class MotionTracker:
    """Keyframe-to-frame triangulation with known odometry for one camera stream (keeps the
    keyframe); see the module docstring. Not thread-safe: call it from one worker."""

    def __init__(self, params: MotionParams | None = None) -> None:
        self.params = params or MotionParams()
        self._key: _Keyframe | None = None

    def reset(self) -> None:
        """Forget the keyframe (e.g. after a jump in odometry or a camera change)."""
        self._key = None

    @property
    def has_keyframe(self) -> bool:
        return self._key is not None

    def update(self, image: np.ndarray, camera: CameraModel, T_odom_camera, stamp_ns: int) -> MotionSample:
        """One frame: ``image`` HxW uint8 gray or HxWx3 uint8 RGB described by ``camera`` (raw: K
        and D; rectified: ``camera.rectified()``), ``T_odom_camera`` the 4x4 pose of its optical
        frame at ``stamp_ns`` (None: no pose). Raises ValueError only for a bad image, camera size
        or pose matrix; every other problem is a status."""
        p = self.params
        gray = _gray(image)
        cam = camera.effective()
        cam.check_image(gray, "motion image")
        if T_odom_camera is None:
            return MotionSample(None, "no pose for this frame (odometry missing, or the image "
                                      "stamp outside the odometry buffer)")
        T_cur = _check_pose(T_odom_camera, "T_odom_camera")
        stamp = int(stamp_ns)
        key = self._key
        if key is None or key.camera_key != _camera_key(cam) or stamp < key.stamp_ns:
            why = ("first keyframe" if key is None else
                   "new keyframe: the camera model changed" if key.camera_key != _camera_key(cam) else
                   "new keyframe: the stamp went backwards")
            return self._new_keyframe(gray, cam, T_cur, stamp, why)
        R, t, baseline, rotation = _relative(key.T_odom_camera, T_cur)
        motion = dict(baseline_m=baseline, rotation_deg=rotation)
        if rotation > p.max_rotation:
            return self._new_keyframe(gray, cam, T_cur, stamp,
                                      f"rotation {rotation:.1f} deg > max_rotation {p.max_rotation:g} "
                                      "deg since the keyframe", **motion)
        if baseline < p.min_baseline:
            if baseline < 0.1 * p.min_baseline and rotation < 0.5:
                status = f"no motion since the keyframe (baseline {baseline:.3f} m)"
            elif rotation >= 1.0:
                status = (f"pure rotation ({rotation:.1f} deg, baseline {baseline:.3f} m < "
                          f"min_baseline {p.min_baseline:g} m)")
            else:
                status = f"baseline {baseline:.3f} m < min_baseline {p.min_baseline:g} m"
            return MotionSample(None, status, **motion)
        if len(key.corners) < p.min_points:
            return self._new_keyframe(gray, cam, T_cur, stamp, f"only {len(key.corners)} corners in "
                                      "the keyframe (texture-less view?)", **motion)
        sample = self._triangulate(key, gray, cam, R, t, **motion)
        if sample.ok or sample.n_points == 0:  # a used or lost keyframe gives way to this frame
            self._new_keyframe(gray, cam, T_cur, stamp, "")
            sample = replace(sample, keyframe=True)
        return sample

    # -- internals ---------------------------------------------------------------------------------

    def _new_keyframe(self, gray: np.ndarray, cam: CameraModel, T: np.ndarray, stamp: int, status: str,
                      **motion) -> MotionSample:
        p = self.params
        h, w = gray.shape
        corners = cv2.goodFeaturesToTrack(gray, maxCorners=p.max_features, qualityLevel=0.01,
                                          minDistance=max(3.0, 0.01 * min(h, w)), blockSize=7)
        corners = np.zeros((0, 1, 2), np.float32) if corners is None else corners.astype(np.float32)
        self._key = _Keyframe(gray, T, stamp, corners, _camera_key(cam))
        return MotionSample(None, status, keyframe=True, **motion)

    def _track(self, key: _Keyframe, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(Nx2 keyframe pixels, Nx2 current pixels) of the corners tracked both ways (KLT)."""
        lk = dict(winSize=(21, 21), maxLevel=4,
                  criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 40, 0.01))
        p0 = key.corners
        p1, st1, _ = cv2.calcOpticalFlowPyrLK(key.gray, gray, p0, None, **lk)
        back, st2, _ = cv2.calcOpticalFlowPyrLK(gray, key.gray, p1, None, **lk)
        h, w = gray.shape
        p0, p1, back = p0.reshape(-1, 2), p1.reshape(-1, 2), back.reshape(-1, 2)
        # forward-backward agreement rejects drift on repetitive texture and occlusions
        good = (st1.reshape(-1) == 1) & (st2.reshape(-1) == 1) & (np.linalg.norm(back - p0, axis=1) < 0.5)
        good &= (p1[:, 0] >= 0) & (p1[:, 0] <= w - 1) & (p1[:, 1] >= 0) & (p1[:, 1] <= h - 1)
        return p0[good].astype(np.float64), p1[good].astype(np.float64)

    def _triangulate(self, key: _Keyframe, gray: np.ndarray, cam: CameraModel, R: np.ndarray,
                     t: np.ndarray, baseline_m: float, rotation_deg: float) -> MotionSample:
        p = self.params
        motion = dict(baseline_m=baseline_m, rotation_deg=rotation_deg)
        uv0, uv1 = self._track(key, gray)
        n_tracked = len(uv0)
        if n_tracked < p.min_points:
            return MotionSample(None, f"only {n_tracked} features tracked from the keyframe "
                                      f"(< min_points {p.min_points}): new keyframe", **motion)
        x0 = normalized_points(cam, uv0)
        x1 = normalized_points(cam, uv1)
        check = self._cross_check(x0, x1, t, cam)
        P0 = np.hstack([np.eye(3), np.zeros((3, 1))])
        P1 = np.hstack([R, t.reshape(3, 1)])
        Xh = cv2.triangulatePoints(P0, P1, x0.T, x1.T)
        with np.errstate(divide="ignore", invalid="ignore"):
            X0 = (Xh[:3] / Xh[3]).T  # Nx3 in the keyframe's camera frame
        X1 = X0 @ R.T + t  # in the current camera frame
        finite = np.isfinite(X0).all(axis=1)
        front = finite & (X0[:, 2] > 1e-6) & (X1[:, 2] > 1e-6)
        # parallax: angle at the point between the rays from the two camera centres
        centre1 = -R.T @ t  # current camera centre in the keyframe frame
        r0, r1 = X0, X0 - centre1
        with np.errstate(divide="ignore", invalid="ignore"):
            cos = np.sum(r0 * r1, axis=1) / (np.linalg.norm(r0, axis=1) * np.linalg.norm(r1, axis=1))
        parallax = np.degrees(np.arccos(np.clip(np.nan_to_num(cos, nan=1.0), -1.0, 1.0)))
        wide = front & (parallax >= p.min_parallax)
        err = np.full(len(X0), np.inf)
        if wide.any():
            e0 = np.linalg.norm(project_points(cam, X0[wide]) - uv0[wide], axis=1)
            e1 = np.linalg.norm(project_points(cam, X1[wide]) - uv1[wide], axis=1)
            err[wide] = np.maximum(e0, e1)
        keep = wide & (err <= p.max_reprojection)
        n = int(keep.sum())
        counts = (f"{n_tracked} tracked, {int(front.sum())} in front of both cameras, "
                  f"{int(wide.sum())} with parallax >= {p.min_parallax:g} deg, {n} within "
                  f"{p.max_reprojection:g} px")
        if not check.agrees:
            return MotionSample(None, f"cross-check failed: {check.reason} (T_base_camera or the "
                                      f"odometry frame wrong?); {counts}", n_points=0,
                                cross_check=check, **motion)
        if n < p.min_points:
            return MotionSample(None, f"too few triangulated points ({counts}; need min_points "
                                      f"{p.min_points})", n_points=n, cross_check=check, **motion)
        h, w = gray.shape
        depth = np.full((h, w), np.nan, np.float32)
        ui = np.floor(uv1[keep, 0] + 0.5).astype(np.intp)
        vi = np.floor(uv1[keep, 1] + 0.5).astype(np.intp)
        depth[vi, ui] = X1[keep, 2].astype(np.float32)
        return MotionSample(depth, f"ok: {n} points, baseline {baseline_m:.3f} m, rotation "
                                   f"{rotation_deg:.1f} deg; {check.reason}", n_points=n,
                            cross_check=check, **motion)

    def _cross_check(self, x0: np.ndarray, x1: np.ndarray, t: np.ndarray, cam: CameraModel) -> CrossCheck:
        """The essential matrix's translation direction (from the tracks alone) against the
        odometry's ``t`` (x_cur = R x_key + t)."""
        p = self.params
        if p.cross_check_angle <= 0:
            return CrossCheck(_NAN, True, 0, "cross-check disabled")
        # RANSAC threshold in normalised units: the pixel tolerance over the focal length
        thresh = p.max_reprojection / max(cam.fx, cam.fy)
        try:
            E, mask = cv2.findEssentialMat(x0, x1, np.eye(3), method=cv2.RANSAC, prob=0.999,
                                           threshold=thresh)
            if E is None or E.shape != (3, 3):
                return CrossCheck(_NAN, True, 0, "cross-check unavailable (no essential matrix)")
            n_in, _, t_e, _ = cv2.recoverPose(E, x0, x1, np.eye(3), mask=mask)
        except cv2.error as exc:
            return CrossCheck(_NAN, True, 0, f"cross-check unavailable ({str(exc).strip()[:60]})")
        if n_in < p.min_points:
            return CrossCheck(_NAN, True, int(n_in), f"cross-check unavailable ({n_in} inliers)")
        d_e = t_e.reshape(3) / np.linalg.norm(t_e)
        d_o = t / np.linalg.norm(t)
        angle = float(np.degrees(np.arccos(np.clip(d_e @ d_o, -1.0, 1.0))))
        agrees = angle <= p.cross_check_angle
        word = "agrees" if agrees else f"> {p.cross_check_angle:g} deg"
        return CrossCheck(angle, agrees, int(n_in), f"translation direction {angle:.1f} deg from the "
                                                    f"essential matrix's ({word}, {n_in} inliers)")


__all__ = ["CrossCheck", "MotionParams", "MotionSample", "MotionSignal", "MotionTracker", "PoseBuffer",
           "normalized_points"]
