"""The offline demo: the whole pipeline on generated or bundled data, every output written to disk.

One frame (a seeded tabletop scene at 640x480 or the real Middlebury motorcycle pair) goes through
the pipeline; out come depth in metres (colour and 8-bit PNG, float32 HxW .npy), the coloured
point cloud in metres in the camera frame (PLY), one PLY per graspable region, a PNG panel and a
rosbag2 (mcap) with the inputs and every output topic, plus depth metrics against ground truth and
region centroid errors (mm) on generator scenes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .camera import CameraModel
from .metrics import DepthMetrics, depth_metrics
from .pipeline import Frame, FrameResult, Pipeline, PipelineConfig

SCENES = ("tabletop", "motorcycle")
DEMO_NAMESPACE = "/depth_perception"
CAMERA_NAMESPACE = "/camera"


@dataclass
class DemoScene:
    name: str
    frame: Frame
    depth_gt_m: np.ndarray | None
    masks: np.ndarray | None = None  # HxW uint16 instance ids (0 = background), when known
    config: PipelineConfig = field(default_factory=PipelineConfig)
    truth: object = None  # the generator scene, for region errors


@dataclass
class DemoReport:
    scene: str
    files: dict[str, Path]
    metrics: DepthMetrics | None
    result: FrameResult
    region_rows: list[tuple[int, str, float, bool]] = field(default_factory=list)


def load_scene(name: str, seed: int = 0) -> DemoScene:
    """A demo input: the procedural tabletop (seeded) or the real Middlebury motorcycle pair."""
    if name == "tabletop":
        from .scene import generate_tabletop

        s = generate_tabletop(seed=seed)
        h, w = s.depth_m.shape
        cam = CameraModel(width=w, height=h, K=s.K)
        right_P = np.hstack([s.K, np.array([[-s.K[0, 0] * s.baseline_m], [0.0], [0.0]])])
        right = CameraModel(width=w, height=h, K=s.K, P=right_P)
        frame = Frame(rgb=s.rgb, camera=cam, right_rgb=s.right_rgb, right_camera=right,
                      stamp_ns=1_000_000_000 * (1 + seed), frame_id="camera_color_optical_frame")
        return DemoScene("tabletop", frame, s.depth_m, s.instance_mask,
                         PipelineConfig(min_depth_m=0.1, max_depth_m=5.0), truth=s)
    if name == "motorcycle":
        from .stereo import motorcycle_pair

        m = motorcycle_pair()
        h, w = m.left.shape[:2]
        cam = CameraModel(width=w, height=h, K=m.K)
        K1 = m.K.copy()
        K1[0, 2] += m.doffs_px
        right_P = np.hstack([K1, np.array([[-m.K[0, 0] * m.baseline_m], [0.0], [0.0]])])
        right = CameraModel(width=w, height=h, K=K1, P=right_P)
        frame = Frame(rgb=m.left, camera=cam, right_rgb=m.right, right_camera=right,
                      stamp_ns=1_000_000_000, frame_id="camera_color_optical_frame")
        return DemoScene("motorcycle", frame, m.depth_gt_m, None,
                         PipelineConfig(min_depth_m=0.5, max_depth_m=10.0, segmentation=()))
    raise ValueError(f"unknown demo scene {name!r} (choose from {', '.join(SCENES)})")


DEPTH_SOURCES = ("auto", "model", "stereo")


def run_demo(out_dir: str | Path, scene: str = "tabletop", seed: int = 0,
             depth: str = "auto") -> DemoReport:
    """Run the pipeline on one demo scene and write depth (PNG + npy), a PLY cloud, a panel PNG and
    a rosbag2 (mcap) with every output topic into ``out_dir``.

    ``depth``: ``model`` runs the bundled monocular student and makes it metric with the stereo
    pair as the signal (the product's main path); ``stereo`` uses SGBM depth directly; ``auto``
    picks ``model`` for the synthetic tabletop (the student's domain) and ``stereo`` for the real
    motorcycle pair."""
    from .files import ensure_dir

    if depth not in DEPTH_SOURCES:
        raise ValueError(f"depth must be one of {', '.join(DEPTH_SOURCES)}, got {depth!r}")
    out = ensure_dir(out_dir)
    demo = load_scene(scene, seed)
    if depth == "auto":
        depth = "model" if scene == "tabletop" else "stereo"
    result = _process(demo, depth)
    files: dict[str, Path] = {}
    points = _write_depth_and_cloud(out, demo.frame, result, files)
    _write_panel(out, demo, result, points, files)
    files["bag"] = out / "demo_bag"
    _write_bag(files["bag"], demo.frame, result)

    metrics = None
    if demo.depth_gt_m is not None:
        metrics = depth_metrics(result.depth_m, demo.depth_gt_m)
    rows = region_errors(result, demo.truth) if demo.truth is not None else []
    return DemoReport(scene=scene, files=files, metrics=metrics, result=result, region_rows=rows)


def _process(demo: DemoScene, depth: str) -> FrameResult:
    """The pipeline's result for the scene: ``model`` depth (the bundled student, metric scale from
    the stereo pair) or ``stereo`` depth."""
    estimator = None
    config = demo.config
    if depth == "model":
        from dataclasses import replace

        from .depth.estimator import DepthEstimator
        from .depth.zoo import DEFAULT_MODEL
        from .metric import MetricConfig

        estimator = DepthEstimator(DEFAULT_MODEL, backend="torch", log=None)
        config = replace(config, metric=MetricConfig(mode="stereo"))
    return Pipeline(config, estimator=estimator).process(demo.frame)


def _write_depth_and_cloud(out: Path, frame: Frame, result: FrameResult, files: dict[str, Path]) -> np.ndarray:
    """Depth as colour PNG, 8-bit PNG and float npy (metres), and the coloured cloud as PLY; the
    HxWx3 (or Nx3) points in metres, camera frame."""
    from .files import write_depth, write_ply

    files["depth_png"] = write_depth(out / "depth", result.depth_m, "color")
    files["depth_gray_png"] = write_depth(out / "depth_gray", result.depth_m, "png8")
    files["depth_npy"] = write_depth(out / "depth", result.depth_m, "npy")
    points = result.points if result.points is not None else result.camera.backproject(
        result.depth_m)
    files["cloud_ply"] = out / "cloud.ply"
    write_ply(files["cloud_ply"], points, frame.rgb)
    return points


def _write_panel(out: Path, demo: DemoScene, result: FrameResult, points: np.ndarray,
                 files: dict[str, Path]) -> None:
    """The PNG panel: input, depth, orbit view of the cloud, and the graspable regions (also written
    as one PLY each) or else the ground-truth depth."""
    from .files import write_image
    from .visualize import colorize_depth, depth_range, make_panel, render_cloud_view

    frame = demo.frame
    colour = colorize_depth(result.depth_m)
    tiles = [frame.rgb, colour, render_cloud_view(points, frame.rgb, result.camera.K,
                                                  result.camera.size)]
    how = f"network + {result.depth_source} scale" if result.prediction is not None \
        else result.depth_source
    titles = ["input (left)", f"depth ({how})", "point cloud (orbit view)"]
    if result.labels is not None and result.regions:
        from .regions import write_region_plys

        tiles.append(_draw_regions(frame.rgb, result))
        titles.append(f"graspable regions ({result.segmentation_source})")
        files["region_plys"] = out / "regions"
        write_region_plys(files["region_plys"], result.regions)
    elif demo.depth_gt_m is not None:
        tiles.append(colorize_depth(demo.depth_gt_m, *depth_range(result.depth_m)))
        titles.append("ground-truth depth")
    files["panel_png"] = out / "panel.png"
    write_image(files["panel_png"], make_panel(tiles, titles))


def _write_bag(path: Path, frame: Frame, result: FrameResult) -> None:
    """A rosbag2 (mcap) with the camera inputs and every output topic, exactly as the node and the
    bag processor publish them."""
    from .ros import messages as M
    from .ros.bag import BagWriter
    from .ros.conversion import OutputOptions, iter_result_messages
    from .ros.region_messages import rosbags_marker_types, rosbags_region_types

    t = M.rosbags_types()
    header = M.make_header(t, frame.stamp_ns, frame.frame_id)
    cam_msg = M.model_to_camera_info(t, frame.camera, header)
    with BagWriter(path, storage="mcap", types=t, overwrite=True) as bag:
        stamp = frame.stamp_ns
        bag.write(f"{CAMERA_NAMESPACE}/image", M.numpy_to_image(t, frame.rgb, "rgb8", header), stamp)
        bag.write(f"{CAMERA_NAMESPACE}/camera_info", cam_msg, stamp)
        if frame.right_rgb is not None and frame.right_camera is not None:
            bag.write(f"{CAMERA_NAMESPACE}/right/image",
                      M.numpy_to_image(t, frame.right_rgb, "rgb8", header), stamp)
            bag.write(f"{CAMERA_NAMESPACE}/right/camera_info",
                      M.model_to_camera_info(t, frame.right_camera, header), stamp)
        options = OutputOptions(region_types=rosbags_region_types(t.typestore),
                                marker_types=rosbags_marker_types(t.typestore))
        for topic, msg in iter_result_messages(t, frame, result, header, options):
            bag.write(f"{DEMO_NAMESPACE}/{topic}", msg, stamp)


def _draw_regions(rgb: np.ndarray, result: FrameResult) -> np.ndarray:
    """Mask overlay with each region's id, label, width and verdict (green = graspable)."""
    import cv2

    from .visualize import label_overlay

    img = np.ascontiguousarray(label_overlay(rgb, result.labels))
    for r in result.regions:
        x, y, w, h = (int(v) for v in r.roi)
        colour = (0, 220, 0) if r.graspable else (230, 60, 40)
        cv2.rectangle(img, (x, y), (x + w, y + h), colour, 2)
        text = f"{r.id} {r.label} {100 * r.grasp_width:.1f}cm" if np.isfinite(r.grasp_width) \
            else f"{r.id} {r.label}"
        cv2.putText(img, text, (x, max(12, y - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1,
                    cv2.LINE_AA)
    return img


def region_errors(result: FrameResult, scene: object) -> list[tuple[int, str, float, bool]]:
    """(region id, true kind, centroid error in mm, graspable) for regions that lie on one true
    object of a generator scene (matched by majority of the region's pixels)."""
    rows = []
    mask, objects = scene.instance_mask, scene.objects  # type: ignore[attr-defined]
    for r in result.regions:
        ids, counts = np.unique(mask[result.labels == r.id], return_counts=True)
        best = int(ids[np.argmax(counts)]) if counts.size else 0
        if best == 0 or not np.all(np.isfinite(r.centroid)):
            continue
        err = float(np.linalg.norm(r.centroid - objects[best - 1].centroid_camera)) * 1e3
        rows.append((r.id, objects[best - 1].kind, err, r.graspable))
    return rows


def format_report(report: DemoReport) -> str:
    """Human-readable summary: where the files are and what was measured."""
    lines = [f"demo scene: {report.scene}", "", "files:"]
    width = max(len(k) for k in report.files)
    for key, path in report.files.items():
        lines.append(f"  {key:<{width}}  {path}")
    r = report.result
    model = ""
    if r.prediction is not None:
        from .depth.zoo import DEFAULT_MODEL

        model = f"{DEFAULT_MODEL} (bundled, synthetic-domain) + metric scale from "
    lines += ["", "measured:", f"  depth                  {model}{r.depth_source}",
              f"  valid pixels           {100 * r.valid_fraction:.1f} %"]
    m = report.metrics
    if m is not None:
        lines += [
            f"  AbsRel vs ground truth {m.abs_rel:.4f}",
            f"  RMSE vs ground truth   {1000 * m.rmse_m:.1f} mm",
            f"  delta1 (<1.25)         {m.delta1:.3f}",
            f"  coverage of truth      {100 * m.coverage:.1f} %",
        ]
    if r.regions:
        ok = sum(x.graspable for x in r.regions)
        lines.append(f"  regions                {len(r.regions)} ({ok} graspable; "
                     f"masks: {r.segmentation_source})")
    if report.region_rows:
        errs = [e for _, _, e, _ in report.region_rows]
        lines.append(f"  region centroid error  median {np.median(errs):.1f} mm, max "
                     f"{max(errs):.1f} mm over {len(errs)} objects ({r.depth_source} scale)")
    for stage, ms in r.timings_ms.items():
        lines.append(f"  {stage + ' time':<22} {ms:.1f} ms")
    return "\n".join(lines)
