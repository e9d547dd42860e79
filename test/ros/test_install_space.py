"""The repository built with colcon as a ROS 2 workspace, and the install space that build makes.

For each install mode (plain and ``--symlink-install``) a fresh workspace is made once per module:
``ws/src/depth_perception`` holds the repository's files (``git ls-files``: tracked, and untracked
but not ignored) and ``colcon build --base-paths src/depth_perception src/depth_perception/msg``
builds both packages (colcon does not descend into msg/, the repository root being a package
itself). With ``ws/install/setup.bash`` sourced on top of scripts/ros_env.sh, as a user does:

- ``ros2 pkg prefix`` finds both packages in the workspace, the compiled regions kernel and
  depth_perception_msgs import from it, and the symlink install links the Python sources;
- ``ros2 run`` and ``ros2 launch`` start the node, ``ros2 node list`` shows it, and Ctrl-C stops
  everything promptly, cleanly (exit status 0, no traceback) and without leaving a node behind.

Runs inside the loopback-only network namespace only (scripts/netns.sh; make test does); needs the
ROS 2 tools of scripts/install_ros_tools.sh (colcon, ros2, launch_ros) in the venv, cmake and g++.
Without a ROS install (PyPI wheels only) the message build needs scripts/cmake/drop_missing_include_dirs.cmake (the PyPI
wheels' CMake exports name include dirs that do not exist); a robot's ROS 2 install needs nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from ros_checks import TOOLS_HINT, in_loopback_only_netns, require_module, skip_or_fail

pytestmark = [pytest.mark.ros, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.prefix) / "bin"
CMAKE_INCLUDE = REPO / "scripts" / "cmake" / "drop_missing_include_dirs.cmake"
PACKAGE = "depth_perception"
MSGS = "depth_perception_msgs"
PYTHON_DIR = f"python{sys.version_info[0]}.{sys.version_info[1]}"

#: install mode → extra `colcon build` arguments
MODES = {"plain": [], "symlink": ["--symlink-install"]}

BUILD_TIMEOUT_S = 900.0  # both packages take ~35 s on 2 cores
READY_TIMEOUT_S = 60.0  # until the node logs "depth_perception ready" and `ros2 node list` shows it
RUN_STOP_TIMEOUT_S = 10.0  # Ctrl-C → `ros2 run` has exited
LAUNCH_STOP_TIMEOUT_S = 12.0  # Ctrl-C → `ros2 launch` has exited (its SIGTERM escalation is 5 s)
READY_LINE = "depth_perception ready"


@dataclass
class Workspace:
    """A built colcon workspace and the environment with its install space sourced."""

    root: Path
    mode: str
    env: dict[str, str]  # scripts/ros_env.sh + install/setup.bash, venv first on PATH
    build_s: float

    @property
    def install(self) -> Path:
        return self.root / "install"

    @property
    def source(self) -> Path:
        return self.root / "src" / PACKAGE

    def run(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run a command with the install space sourced; fail the test on a timeout."""
        return _run(list(args), env=self.env, cwd=self.root, timeout=timeout)


def _run(cmd: list[str], env: dict[str, str], cwd: Path,
         timeout: float) -> subprocess.CompletedProcess[str]:
    """subprocess.run in a new session whose whole process group is killed afterwards."""
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(cmd)} did not finish in {timeout:.0f} s:\n{out}\n{err}"[-4000:])
    finally:
        _kill_group(proc)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process group a start_new_session=True process leads (members may outlive it)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def _bash_env(script: str, env: dict[str, str]) -> dict[str, str]:
    """The environment after bash has run `script` (e.g. sourced a setup file) in `env`."""
    out = subprocess.run(["bash", "-c", f"{script} >/dev/null && env -0"], env=env, check=True,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=60).stdout
    return dict(item.split("=", 1) for item in out.decode().split("\0") if "=" in item)


def _copy_repository_files(dest: Path) -> None:
    """Copy the repository's files as they are in the working tree into `dest`: the tracked ones
    and the untracked ones git does not ignore (a module added but not yet committed), none of
    the build outputs (.gitignore)."""
    try:
        listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others",
                                 "--exclude-standard"], check=True,
                                capture_output=True, timeout=60).stdout.decode().split("\0")
    except (OSError, subprocess.SubprocessError):
        listed = []
    if not listed or listed == [""]:  # not a git checkout: everything but build outputs
        shutil.copytree(REPO, dest, symlinks=True, ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "install", "log", "__pycache__", "*.egg-info", "*.so"))
        return
    for name in filter(None, listed):
        src = REPO / name
        if not (src.is_file() or src.is_symlink()):  # deleted in the working tree, or a submodule
            continue
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / name, follow_symlinks=False)


def _require_tools() -> None:
    """Skip (fail where required) unless this can build and run a workspace here."""
    if not in_loopback_only_netns():
        skip_or_fail("the install-space tests start DDS: run them inside scripts/netns.sh "
                     "(loopback only)")
    for tool in ("colcon", "ros2"):
        if not os.access(VENV_BIN / tool, os.X_OK):
            skip_or_fail(f"{tool} not in {VENV_BIN}; {TOOLS_HINT}", "DP_REQUIRE_ROS_TOOLS")
    require_module("launch_ros", TOOLS_HINT)
    for tool in ("cmake", "c++"):
        if shutil.which(tool) is None:
            skip_or_fail(f"{tool} not found: apt-get install cmake g++", "DP_REQUIRE_ROS_TOOLS")


@pytest.fixture(scope="module", params=list(MODES))
def workspace(request, tmp_path_factory) -> Workspace:
    """A fresh workspace built with colcon in the parametrised install mode (once per module)."""
    _require_tools()
    mode = request.param
    root = tmp_path_factory.mktemp(f"ws_{mode}")
    _copy_repository_files(root / "src" / PACKAGE)

    base = dict(os.environ)
    base["PATH"] = f"{VENV_BIN}{os.pathsep}{base.get('PATH', '')}"  # python3 is the venv's
    base["COLCON_HOME"] = str(root / ".colcon")  # no user defaults.yaml / mixins
    base["ROS_LOG_DIR"] = str(root / "ros_log")  # launch/node logs stay in the workspace
    base["PYTHONUNBUFFERED"] = "1"  # `ros2 launch` prints its children's output as it comes
    base["RCUTILS_COLORIZED_OUTPUT"] = "0"
    base = _bash_env(f"source {REPO / 'scripts' / 'ros_env.sh'}", base)

    cmake_args = ["-DBUILD_TESTING=OFF", f"-DPython3_EXECUTABLE={sys.executable}"]
    if CMAKE_INCLUDE.is_file():
        cmake_args.append(f"-DCMAKE_PROJECT_INCLUDE={CMAKE_INCLUDE}")
    cmd = [str(VENV_BIN / "colcon"), "build", *MODES[mode],
           "--base-paths", f"src/{PACKAGE}", f"src/{PACKAGE}/msg",
           "--parallel-workers", "2", "--event-handlers", "console_direct-",
           "--cmake-args", *cmake_args]
    start = time.monotonic()
    built = _run(cmd, env=base, cwd=root, timeout=BUILD_TIMEOUT_S)
    build_s = time.monotonic() - start
    if built.returncode != 0:
        logs = "\n".join(f"--- {p.relative_to(root)}\n{p.read_text(errors='replace')[-3000:]}"
                         for p in sorted((root / "log" / "latest_build").glob("*/stderr.log"))
                         if p.stat().st_size)
        pytest.fail(f"colcon build ({mode}) failed with {built.returncode}:\n"
                    f"{built.stdout[-3000:]}\n{built.stderr[-3000:]}\n{logs}", pytrace=False)
    print(f"\ncolcon build ({mode}): {build_s:.1f} s")

    env = _bash_env(f"source {root / 'install' / 'setup.bash'}", base)
    return Workspace(root=root, mode=mode, env=env, build_s=build_s)


# -- the install space -----------------------------------------------------------------------------


def test_ros2_pkg_prefix_finds_both_packages_in_the_workspace(workspace, loopback_netns):
    for package in (PACKAGE, MSGS):
        result = workspace.run("ros2", "pkg", "prefix", package)
        assert result.returncode == 0, result.stderr
        assert Path(result.stdout.strip()).resolve() == (workspace.install / package).resolve()


def test_the_node_executable_is_where_ros2_run_looks(workspace, loopback_netns):
    script = workspace.install / PACKAGE / "lib" / PACKAGE / "depth_perception_node"
    assert os.access(script, os.X_OK), sorted(p.name for p in script.parent.glob("*"))
    result = workspace.run("ros2", "pkg", "executables", PACKAGE)
    assert f"{PACKAGE} depth_perception_node" in result.stdout.splitlines(), result.stdout


def test_compiled_kernel_and_messages_import_from_the_install_space(workspace, loopback_netns):
    code = (
        "import json, depth_perception, depth_perception._regions_kernel as kernel\n"
        "from depth_perception.regions import kernel_available\n"
        "from depth_perception_msgs.msg import GraspableRegionArray\n"
        "import depth_perception_msgs\n"
        "GraspableRegionArray()\n"
        "print(json.dumps({'package': depth_perception.__file__, 'kernel': kernel.__file__,\n"
        "                  'msgs': depth_perception_msgs.__file__,\n"
        "                  'kernel_available': kernel_available()}))\n"
    )
    result = workspace.run("python3", "-c", code)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["kernel_available"] is True
    # from this workspace, not from the venv's editable install of the repository
    for key in ("package", "kernel"):
        assert workspace.root.resolve() in Path(found[key]).resolve().parents, found
    # its folders, not the file: a symlink install links the generated Python into build/
    msgs_prefix = (workspace.install / MSGS).resolve()
    assert any(d.resolve() == msgs_prefix for d in Path(found["msgs"]).parents), found


def test_python_sources_are_copied_or_linked_as_the_mode_says(workspace, loopback_netns):
    site = workspace.install / PACKAGE / "lib" / PYTHON_DIR / "site-packages"
    result = workspace.run("python3", "-c",
                           "import depth_perception; print(depth_perception.__file__)")
    assert result.returncode == 0, result.stderr
    init = Path(result.stdout.strip()).resolve()
    launch_file = (workspace.install / PACKAGE / "share" / PACKAGE / "launch"
                   / "depth_perception.launch.py")
    source = workspace.source.resolve()
    config = launch_file.parent.parent / "config"
    # what the launch file reads from the share folder
    for name in ("default.yaml", "depth_perception.rviz", "fastdds_large_data.xml"):
        assert (config / name).is_file(), sorted(p.name for p in config.iterdir())
    if workspace.mode == "plain":
        assert init == (site / PACKAGE / "__init__.py").resolve()
        assert not (site / PACKAGE).is_symlink() and not launch_file.is_symlink()
    else:
        # `setup.py develop`: an egg-link to build/depth_perception, whose package is a symlink
        # into the source tree; colcon puts that build folder first on PYTHONPATH
        links = list(site.glob("*.egg-link"))
        assert links, sorted(p.name for p in site.iterdir())
        target = Path(links[0].read_text().splitlines()[0])
        assert (target / PACKAGE).resolve() == source / PACKAGE
        assert init == source / PACKAGE / "__init__.py"
        assert launch_file.resolve() == source / "launch" / "depth_perception.launch.py"


# -- ros2 run / ros2 launch ------------------------------------------------------------------------


def _processes_mentioning(text: str) -> dict[int, str]:
    """pid → command line of the processes (other than this one) whose command line has `text`."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found[int(entry.name)] = cmdline.strip()
    return found


class Started:
    """A `ros2 run` / `ros2 launch` process in its own session, its output in a file."""

    def __init__(self, workspace: Workspace, args: list[str], log: Path):
        self.workspace = workspace
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(args, env=workspace.env, cwd=workspace.root,
                                         stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_until_ready(self, node: str, timeout: float = READY_TIMEOUT_S) -> None:
        """Until the node has logged that it is ready and `ros2 node list` shows it."""
        deadline = time.monotonic() + timeout
        while READY_LINE not in self.output():
            assert self.proc.poll() is None, f"exited with {self.proc.returncode}:\n{self.output()}"
            assert time.monotonic() < deadline, \
                f"no {READY_LINE!r} in {timeout:.0f} s:\n{self.output()}"
            time.sleep(0.2)
        nodes: list[str] = []
        while node not in nodes:
            assert self.proc.poll() is None, f"exited with {self.proc.returncode}:\n{self.output()}"
            assert time.monotonic() < deadline, \
                f"`ros2 node list` has no {node} after {timeout:.0f} s: {nodes}\n{self.output()}"
            # --no-daemon: no ros2 daemon left running after the test
            nodes = self.workspace.run("ros2", "node", "list", "--no-daemon", "--spin-time", "1",
                                       timeout=30).stdout.split()

    def interrupt(self, whole_group: bool, timeout: float) -> int:
        """Send SIGINT (to the process group: Ctrl-C in a terminal) and return the exit status."""
        if whole_group:
            os.killpg(self.proc.pid, signal.SIGINT)
        else:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {timeout:.0f} s after SIGINT:\n{self.output()}",
                        pytrace=False)

    def close(self) -> None:
        _kill_group(self.proc)
        for pid in _processes_mentioning(str(self.workspace.install)):  # started by this test
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _assert_nothing_left(workspace: Workspace) -> None:
    """No process runs from the install space any more (a node orphaned by its launcher)."""
    deadline = time.monotonic() + 3.0
    while (left := _processes_mentioning(str(workspace.install))) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"still running after shutdown: {left}"


def test_ros2_run_starts_the_node_and_ctrl_c_stops_it(workspace, loopback_netns, tmp_path):
    started = Started(workspace, ["ros2", "run", PACKAGE, "depth_perception_node",
                                  "--ros-args", "-p", "stereo:=true"], tmp_path / "run.log")
    try:
        started.wait_until_ready("/depth_perception")
        # `ros2 run` does not forward signals: Ctrl-C reaches the node through the process group
        status = started.interrupt(whole_group=True, timeout=RUN_STOP_TIMEOUT_S)
        output = started.output()
        assert "Traceback" not in output, output
        assert status == 0, f"exit status {status}:\n{output}"  # main() returns after Ctrl-C
        _assert_nothing_left(workspace)
    finally:
        started.close()


@pytest.mark.parametrize("whole_group", [False, True], ids=["sigint_to_launch", "ctrl_c"])
def test_ros2_launch_starts_the_node_and_sigint_stops_everything(workspace, loopback_netns,
                                                                 tmp_path, whole_group):
    """SIGINT to `ros2 launch` alone (a supervisor's `kill -INT`), or to its whole process group as
    Ctrl-C in a terminal sends it: then the node gets SIGINT twice, from the terminal and again
    from launch, and must still shut down without a traceback."""
    started = Started(workspace, ["ros2", "launch", PACKAGE, "depth_perception.launch.py",
                                  "stereo:=true", "namespace:=dp_test"], tmp_path / "launch.log")
    try:
        started.wait_until_ready("/dp_test/depth_perception")
        status = started.interrupt(whole_group=whole_group, timeout=LAUNCH_STOP_TIMEOUT_S)
        output = started.output()
        assert "Traceback" not in output, output
        assert "process has died" not in output, output  # launch's words for a non-zero exit
        assert "process has finished cleanly" in output, output
        assert status == 0, f"exit status {status}:\n{output}"
        _assert_nothing_left(workspace)
    finally:
        started.close()
