"""Mask → regions per VGA frame, before and after one cleaning pass: speed and accuracy side by side.

    .venv/bin/python bench/regions.py [--before REV] [--frames 40] [--scenes 4] [--exact]

The step timed is what Pipeline runs between segmentation and publishing: masks fused with the
depth, graspable regions extracted from them, and the label image of the regions. BEFORE is the
code of git revision --before (``fuse_masks`` then ``extract_regions``, which cleaned every mask a
second time), AFTER the working tree (``fuse_masks`` once, then ``describe_regions`` on what it
kept), with the compiled kernel where each side has one built, and AFTER once more with
``implementation="numpy"`` (what the kernel buys).

Inputs are generator scenes made as hard as real ones at the borders: masks dilated by 3 px (colour
masks bleed over object borders), depth at object borders mixed with what lies behind (flying
pixels), and 1 % depth spikes inside the objects (--exact: the true masks and depth). Every side runs in its own process (its own
imports of depth_perception) on the same frames, one thread, and the sides take turns frame by
frame (A B C A B C ...), so a change in machine load hits all of them alike. Times are the CPU time
of the worker's thread per frame (time.thread_time): other processes' time on the core is left
out. Accuracy per side, over every object of every scene: the error of the region's centroid
against the solid's (mm; true depth behind the defects, support plane known), and the IoU of the
region's cleaned mask with the generator's instance mask.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_BEFORE = "085a84fde234eca924664f89d857669a8cf45f98"
# the compile flags of setup.py's ext_modules
KERNEL_FLAGS = ["-std=c++17", "-O3", "-ffp-contract=off", "-fno-math-errno", "-shared", "-fPIC"]


# -- inputs -----------------------------------------------------------------------------------------


def hard_frame(scene, rng: np.random.Generator):
    """(depth with flying pixels and spikes, masks dilated by 3 px) of a generator scene."""
    import cv2

    true = scene.depth_m
    fg = scene.instance_mask > 0
    ring = cv2.dilate(fg.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool) & ~cv2.erode(
        fg.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    behind = cv2.dilate(np.where(fg, 0, true), np.ones((9, 9), np.float32))
    front = cv2.erode(np.where(fg, true, 100), np.ones((9, 9), np.float32))
    t = rng.uniform(0.2, 0.8, true.shape).astype(np.float32)
    depth = np.where(ring & (behind - front > 0.02), front + t * (behind - front), true)
    spikes = fg & (rng.random(true.shape) < 0.01)
    depth[spikes] += rng.choice([-1, 1], spikes.sum()) * rng.uniform(0.05, 0.3, spikes.sum())
    masks = cv2.dilate(scene.instance_mask, np.ones((7, 7), np.uint8))
    return depth.astype(np.float32), masks


def write_inputs(path: Path, n_scenes: int, exact: bool) -> None:
    """The frames every side reads: organised clouds, masks, colours, planes and the truth."""
    sys.path.insert(0, str(REPO))
    from depth_perception.camera import CameraModel
    from depth_perception.scene import generate_tabletop

    arrays = {}
    for i in range(n_scenes):
        scene = generate_tabletop(seed=i, n_objects=8)
        depth, masks = (scene.depth_m, scene.instance_mask) if exact else hard_frame(scene, np.random.default_rng(i))
        h, w = depth.shape
        arrays[f"points{i}"] = CameraModel(width=w, height=h, K=scene.K).backproject(depth)
        arrays[f"masks{i}"] = masks
        arrays[f"rgb{i}"] = scene.rgb
        arrays[f"plane{i}"] = scene.table_plane_camera
        arrays[f"truth{i}"] = scene.instance_mask
        arrays[f"centroids{i}"] = np.array([o.centroid_camera for o in scene.objects])
    np.savez(path, n=n_scenes, **arrays)


# -- the old code -----------------------------------------------------------------------------------


def checkout(rev: str, into: Path) -> str:
    """``depth_perception`` of revision ``rev`` under ``into``, its kernel compiled where g++ is;
    returns how its regions run ("compiled" or "numpy: why")."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "depth_perception"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    source = into / "depth_perception" / "_regions_kernel.cpp"
    if not source.exists():
        return "numpy: no kernel at that revision"
    if shutil.which("g++") is None:
        return "numpy: no g++ here"
    target = source.with_name("_regions_kernel" + sysconfig.get_config_var("EXT_SUFFIX"))
    include = sysconfig.get_paths()["include"]
    built = subprocess.run(["g++", *KERNEL_FLAGS, f"-I{include}", str(source), "-o", str(target)],
                           capture_output=True, text=True)
    return "compiled" if built.returncode == 0 else f"numpy: the kernel did not build ({built.stderr[:200]})"


# -- a side, in its own process -----------------------------------------------------------------------


def worker(root: str, side: str, inputs: str) -> None:
    """Serve timing requests on stdin ("frame i" → CPU ms) after one line of accuracy."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
    sys.path.insert(0, root)
    import time

    import cv2

    cv2.setNumThreads(1)
    from depth_perception.segmentation import Segmentation

    data = np.load(inputs)
    step = _step(side)
    # the masks come in as a segmentation (what a mask source hands over), built outside the timing
    frames = [(Segmentation(data[f"masks{i}"]), data[f"points{i}"], data[f"rgb{i}"], data[f"plane{i}"])
              for i in range(int(data["n"]))]
    errors, ious, counts = [], [], []
    for i, frame in enumerate(frames):
        regions, labels = step(*frame)
        truth, centroids = data[f"truth{i}"], data[f"centroids{i}"]
        counts.append([len(regions), sum(r.graspable for r in regions)])
        for r in regions:
            if r.point_count and 1 <= r.id <= len(centroids):
                errors.append(float(np.linalg.norm(r.centroid - centroids[r.id - 1])) * 1e3)
        for obj in range(1, len(centroids) + 1):
            mine, true = labels == obj, truth == obj
            ious.append(float((mine & true).sum() / max((mine | true).sum(), 1)))
    import depth_perception

    print(json.dumps({"errors": errors, "ious": ious, "counts": counts, "from": depth_perception.__file__}),
          flush=True)
    for line in sys.stdin:
        frame = frames[int(line.split()[1])]
        t = time.thread_time()
        step(*frame)
        print(json.dumps((time.thread_time() - t) * 1e3), flush=True)


def _step(side: str):
    """The mask → regions step of one side, as Pipeline runs it: (segmentation, points, rgb,
    plane) → (regions, label image)."""
    from depth_perception.regions import label_image

    if side == "before":  # the revision given by --before: fusion lived in segmentation then
        from depth_perception.regions import extract_regions
        from depth_perception.segmentation import fuse_masks

        def before(seg, points, rgb, plane):
            fused = fuse_masks(seg, points).segmentation
            regions = extract_regions(points, fused.labels, rgb=rgb, support_plane=plane)
            return regions, label_image(regions, seg.shape)
        return before

    from depth_perception.regions import RegionParams, describe_regions
    from depth_perception.regions.fusion import fuse_masks

    params = RegionParams(implementation="numpy" if side == "after-numpy" else "auto")

    def after(seg, points, rgb, plane):
        fused = fuse_masks(seg, points, params, plane)
        regions = describe_regions(fused.cleaned, None, params, rgb=rgb, keep_dropped=False)
        return regions, label_image(regions, seg.shape)
    return after


# -- the parent ---------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", default=DEFAULT_BEFORE, help="git revision of BEFORE (default: %(default)s)")
    ap.add_argument("--frames", type=int, default=40, help="timed frames per side")
    ap.add_argument("--scenes", type=int, default=4)
    ap.add_argument("--exact", action="store_true", help="true masks and depth, no defects")
    ap.add_argument("--worker", nargs=3, metavar=("ROOT", "SIDE", "INPUTS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "frames.npz"
        write_inputs(inputs, args.scenes, args.exact)
        before_root = Path(tmp) / "before"
        before_root.mkdir()
        before_runs = checkout(args.before, before_root)
        sides = {"before": str(before_root), "after": str(REPO), "after-numpy": str(REPO)}
        procs = {side: subprocess.Popen([sys.executable, __file__, "--worker", root, side, str(inputs)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                        cwd=tmp) for side, root in sides.items()}
        accuracy = {side: json.loads(p.stdout.readline()) for side, p in procs.items()}
        times: dict[str, list[float]] = {side: [] for side in procs}
        for k in range(args.frames + 3):  # three warm-up rounds
            for side, p in procs.items():
                p.stdin.write(f"frame {k % args.scenes}\n")
                p.stdin.flush()
                ms = json.loads(p.stdout.readline())
                if k >= 3:
                    times[side].append(ms)
        for p in procs.values():
            p.stdin.close()
            p.wait()
    report(args, accuracy, times, before_runs)


def report(args, accuracy: dict, times: dict, before_runs: str) -> None:
    inputs = "true masks and depth" if args.exact else "bled masks and flying pixels"
    print(f"mask -> regions per 640x480 frame, {args.scenes} scenes x 8 objects, {inputs}; "
          f"{args.frames} frames per side, interleaved, one thread, thread CPU time")
    print(f"BEFORE = {args.before[:12]} (fuse_masks + extract_regions, regions: {before_runs}); AFTER = working tree")
    print(f"{'side':12s} {'median ms':>9s} {'min ms':>7s} {'centroid err mm (median / p90)':>31s} "
          f"{'mask IoU (median / min)':>24s} {'regions / graspable':>20s}")
    for side, t in times.items():
        acc = accuracy[side]
        e, iou = np.array(acc["errors"]), np.array(acc["ious"])
        n_reg, n_grasp = np.sum(acc["counts"], axis=0)
        print(f"{side:12s} {statistics.median(t):9.2f} {min(t):7.2f} "
              f"{np.median(e):15.1f} / {np.percentile(e, 90):5.1f}{'':9s}"
              f"{np.median(iou):11.3f} / {iou.min():5.3f}{'':5s} {n_reg:9d} / {n_grasp}")
    b, a, n = (statistics.median(times[s]) for s in ("before", "after", "after-numpy"))
    print(f"after is {b / a:.2f}x faster than before; the compiled kernel makes after {n / a:.2f}x faster than "
          f"its numpy path (median ms, same frames, same run)")


if __name__ == "__main__":
    main()
