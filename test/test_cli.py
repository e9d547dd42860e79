"""The `depth-perception` command, run as users run it: the installed console script."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from depth_perception.files import read_image, read_ply, write_image
from depth_perception.scene import generate_tabletop


def cli_path() -> str:
    exe = Path(sys.executable).parent / "depth-perception"
    found = str(exe) if exe.exists() else shutil.which("depth-perception")
    if not found:
        pytest.skip("the depth-perception console script is not installed (pip install -e .)")
    return found


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([cli_path(), *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def stereo_pngs(tmp_path_factory):
    scene = generate_tabletop(seed=2, width=320, height=240)
    d = tmp_path_factory.mktemp("stereo")
    for side, img in (("left", scene.rgb), ("right", scene.right_rgb)):
        (d / side).mkdir()
        for i in range(2):
            write_image(d / side / f"frame{i}.png", img)
    return d, scene


@pytest.mark.parametrize("sub", [[], ["predict"], ["demo"], ["bag"]])
def test_every_command_has_help(sub):
    proc = run(*sub, "--help")
    assert proc.returncode == 0 and "usage: depth-perception" in proc.stdout


def test_demo_writes_depth_cloud_panel_and_a_readable_bag(tmp_path):
    from depth_perception.ros import messages as M
    from depth_perception.ros.bag import read_bag

    proc = run("demo", "--out", str(tmp_path / "out"), "--seed", "4")
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out"
    for name in ("depth.png", "depth_gray.png", "depth.npy", "cloud.ply", "panel.png"):
        assert (out / name).is_file(), name
    assert "AbsRel vs ground truth" in proc.stdout and str(out / "panel.png") in proc.stdout

    depth = np.load(out / "depth.npy")
    assert depth.shape == (480, 640) and np.isfinite(depth).mean() > 0.5
    assert read_image(out / "panel.png").shape[0] == 360
    ply = read_ply(out / "cloud.ply")
    assert len(ply) == np.isfinite(depth).sum()

    messages = {topic: msg for topic, _, _, msg in read_bag(out / "demo_bag")}
    assert {"/camera/image", "/camera/camera_info", "/depth_perception/depth",
            "/depth_perception/depth/camera_info", "/depth_perception/points"} <= set(messages)
    np.testing.assert_array_equal(M.image_to_depth(messages["/depth_perception/depth"]), depth)
    cloud = messages["/depth_perception/points"]
    assert (cloud.height, cloud.width) == (480, 640)
    # the demo segments the table-top objects and measures them
    assert "graspable" in proc.stdout and "region centroid error" in proc.stdout
    assert len(list((out / "regions").glob("region_*.ply"))) >= 3
    assert {"/depth_perception/regions/labels", "/depth_perception/regions/markers"} <= set(messages)


def test_demo_on_the_real_motorcycle_pair(tmp_path):
    proc = run("demo", "--scene", "motorcycle", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    delta1 = float(next(l for l in proc.stdout.splitlines() if "delta1" in l).split()[-1])
    assert delta1 > 0.95


def test_predict_stereo_single_image_png8_keeps_the_input_size(stereo_pngs, tmp_path):
    d, scene = stereo_pngs
    out = tmp_path / "depth.png"
    fx = f"{scene.K[0, 0]:.6f}"
    proc = run("predict", "--input", str(d / "left/frame0.png"), "--output", str(out),
               "--stereo-right", str(d / "right/frame0.png"), "--baseline", str(scene.baseline_m),
               "--focal", fx)
    assert proc.returncode == 0, proc.stderr
    gray = read_image(out)[..., 0]
    assert gray.shape == (240, 320)
    near = gray[np.isfinite(scene.depth_m) & (scene.depth_m < np.nanpercentile(scene.depth_m, 20))]
    far = gray[np.isfinite(scene.depth_m) & (scene.depth_m > np.nanpercentile(scene.depth_m, 80))]
    assert np.median(near[near > 0]) > np.median(far[far > 0])  # 255 = near, 0 = far


def test_predict_without_a_model_uses_the_bundled_student(stereo_pngs, tmp_path):
    d, scene = stereo_pngs
    out = tmp_path / "depth.png"
    proc = run("predict", "-i", str(d / "left/frame0.png"), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "student_tabletop" in proc.stderr and "synthetic" in proc.stderr
    gray = read_image(out)[..., 0].astype(float)
    assert gray.shape == (240, 320)
    ok = np.isfinite(scene.depth_m)
    # brighter = nearer: the student's output ranks depth like the truth does
    corr = np.corrcoef(gray[ok], 1.0 / scene.depth_m[ok])[0, 1]
    assert corr > 0.8, corr


def test_predict_folder_to_npy_metres(stereo_pngs, tmp_path):
    d, scene = stereo_pngs
    proc = run("predict", "-i", str(d / "left"), "-o", str(tmp_path), "--format", "npy",
               "--stereo-right", str(d / "right"), "--baseline", str(scene.baseline_m),
               "--focal", str(scene.K[0, 0]), "--doffs", "0")
    assert proc.returncode == 0, proc.stderr
    outs = sorted(tmp_path.glob("*.npy"))
    assert [p.name for p in outs] == ["frame0.npy", "frame1.npy"]
    depth = np.load(outs[0])
    ok = np.isfinite(depth) & np.isfinite(scene.depth_m)
    assert np.median(np.abs(depth[ok] - scene.depth_m[ok]) / scene.depth_m[ok]) < 0.02


def test_errors_are_one_readable_line(stereo_pngs, tmp_path):
    d, _ = stereo_pngs
    left = str(d / "left/frame0.png")
    assert_one_line_error(run("predict", "-i", str(tmp_path / "missing.png"), "-o", "x.png"),
                          "missing.png", "no such file")
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"not a png at all")
    assert_one_line_error(
        run("predict", "-i", str(garbage), "-o", str(tmp_path / "o.png"), "--stereo-right",
            str(garbage), "--baseline", "0.1", "--focal", "300"),
        "garbage.png", "not a readable image")
    assert_one_line_error(run("predict", "-i", left, "-o", str(tmp_path / "o.png"),
                              "--model", "depth_anything_v2_small"), "give weights")
    assert_one_line_error(run("predict", "-i", left, "-o", str(tmp_path / "o.png"),
                              "--stereo-right", left, "--focal", "300"), "--baseline")
    small = tmp_path / "small.png"
    write_image(small, np.zeros((100, 120, 3), np.uint8))
    assert_one_line_error(
        run("predict", "-i", left, "-o", str(tmp_path / "o.png"), "--stereo-right", str(small),
            "--baseline", "0.1", "--focal", "300"), "320x240", "120x100")


def test_predict_fails_when_no_frame_gives_valid_depth(tmp_path):
    black = tmp_path / "black.png"
    write_image(black, np.zeros((120, 160, 3), np.uint8))  # a lens cap: refused, never guessed at
    assert_one_line_error(
        run("predict", "-i", str(black), "-o", str(tmp_path / "o.png"), "--stereo-right", str(black),
            "--baseline", "0.1", "--focal", "150"), "no frame produced valid depth", "black")


def test_a_failed_predict_leaves_no_output_and_a_rerun_needs_no_overwrite(stereo_pngs, tmp_path):
    d, scene = stereo_pngs
    inputs = tmp_path / "in"
    shutil.copytree(d / "left", inputs)
    (inputs / "frame9.png").write_bytes(b"truncated")  # the last frame is broken
    stereo = ("--stereo-right", str(d / "right"), "--baseline", str(scene.baseline_m),
              "--focal", str(scene.K[0, 0]))
    out = tmp_path / "out"
    proc = run("predict", "-i", str(inputs), "-o", str(out), *stereo)
    assert_one_line_error(proc, "--stereo-right has 2")  # 3 left images, 2 right
    (inputs / "frame9.png").unlink()
    shutil.copy(d / "left/frame0.png", inputs / "frame1.png")
    right = tmp_path / "right"
    shutil.copytree(d / "right", right)
    (right / "frame1.png").write_bytes(b"truncated")
    stereo = ("--stereo-right", str(right), *stereo[2:])
    assert_one_line_error(run("predict", "-i", str(inputs), "-o", str(out), *stereo),
                          "frame1.png", "not a readable image")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "right"]  # no partial output
    shutil.copy(d / "right/frame0.png", right / "frame1.png")
    assert run("predict", "-i", str(inputs), "-o", str(out), *stereo).returncode == 0
    assert sorted(p.name for p in out.iterdir()) == ["frame0.png", "frame1.png"]
    assert_one_line_error(run("predict", "-i", str(inputs), "-o", str(out), *stereo),
                          "already exists", "--overwrite")
    assert run("predict", "-i", str(inputs), "-o", str(out), "--overwrite", *stereo).returncode == 0


def test_an_image_over_the_pixel_limit_is_refused_before_decoding(tmp_path):
    bomb = tmp_path / "bomb.png"
    # 15000 x 15000 black pixels compress to under 1 MB; decoded they would take 675 MB, as RGB 2 GB
    write_image(bomb, np.zeros((15000, 15000), np.uint8))
    code = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))\n"
        "from depth_perception.cli import main\n"
        f"rc = main(['predict', '-i', {str(bomb)!r}, '-o', {str(tmp_path / 'o.png')!r},\n"
        f"           '--stereo-right', {str(bomb)!r}, '--baseline', '0.1', '--focal', '100'])\n"
        # VmHWM: this process image's peak (ru_maxrss would carry the forking parent's over exec)
        "print(open('/proc/self/status').read().split('VmHWM:')[1].split()[0])\n"
        "sys.exit(rc)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert_one_line_error(proc, "bomb.png", "225.0 MP", "--max-pixels")
    assert int(proc.stdout.split()[-1]) < 500_000  # kB: the pixels were never decoded


@pytest.mark.parametrize("sig", ["SIGINT", "SIGKILL"])
def test_a_killed_predict_never_leaves_its_output(tmp_path, sig):
    import signal
    import time

    # VGA: a run long enough (seconds) that the signal lands mid-run on a fast idle machine too
    scene = generate_tabletop(seed=4, width=640, height=480)
    for side, image in (("left", scene.rgb), ("right", scene.right_rgb)):
        (tmp_path / side).mkdir()
        for i in range(60):
            write_image(tmp_path / side / f"frame{i:02d}.png", image)
    out = tmp_path / "out"
    argv = [cli_path(), "predict", "-i", str(tmp_path / "left"), "-o", str(out), "--stereo-right",
            str(tmp_path / "right"), "--baseline", str(scene.baseline_m), "--focal",
            str(scene.K[0, 0])]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not any(p.name.startswith(".out.partial-") for p in tmp_path.iterdir()):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    time.sleep(0.5)  # some frames written under the temporary name
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=60)
    assert not out.exists()  # never half an output under the name asked for
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.partial-")]
    if sig == "SIGINT":
        assert proc.returncode == 130 and "interrupted" in err and leftovers == []
    else:  # nothing can clean up after SIGKILL: the hidden temporary stays, the output does not
        assert proc.returncode == -signal.SIGKILL
    assert run(*argv[1:]).returncode == 0  # a rerun needs no --overwrite
    assert len(list(out.iterdir())) == 60
