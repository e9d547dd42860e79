# Two entry points that do their own set-up on a fresh machine:
#   make demo    the whole pipeline offline on generated data -> demo_out/
#   make test    the test suite (ROS tests inside a loopback-only network namespace)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q

.PHONY: demo test msgs bench soak bench-gpu clean

$(VENV)/.base: setup.py requirements/ci.txt depth_perception/_regions_kernel.cpp
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -r requirements/ci.txt
	$(PIP) install --no-deps -e .
	touch $@

$(VENV)/.ros: $(VENV)/.base requirements/ros.txt requirements/typing.txt
	$(PIP) install -r requirements/ros.txt
	$(PIP) install --no-deps -r requirements/typing.txt
	touch $@

demo: $(VENV)/.base
	$(VENV)/bin/depth-perception demo --out demo_out

# The ROS 2 tools PyPI lacks (launch_testing, ros2cli, colcon, sensor_msgs_py, cv_bridge,
# vision_msgs, ...), from their upstream sources in ../shared/ros2-src; a clone without that folder
# skips the tests that need them.
$(VENV)/.ros-tools: $(VENV)/.ros requirements/ros-tools.txt scripts/install_ros_tools.sh \
		scripts/build_cv_bridge.sh scripts/build_msgs.sh $(wildcard ../shared/ros2-src/*.tar.gz)
	PYTHON=$(PY) scripts/install_ros_tools.sh
	touch $@

msgs: $(VENV)/.ros-tools
	PYTHON=$(PY) scripts/build_msgs.sh

# DP_REQUIRE_ROS=1 / DP_REQUIRE_TYPECHECK=1 / DP_REQUIRE_KERNEL=1: the rclpy and ROS-tool tests,
# the TensorRT type check and the compiled regions kernel must run here, not skip.
# DP_REQUIRE_ROS_TOOLS=1 where ../shared/ros2-src exists (CI): launch_testing, colcon, cv_bridge,
# sensor_msgs_py, vision_msgs tests must run; a clone without it skips them with the reason.
ROS_TOOLS_REQUIRED := $(if $(wildcard ../shared/ros2-src/SOURCES.tsv),1,0)

test: msgs
	DP_REQUIRE_ROS=1 DP_REQUIRE_ROS_TOOLS=$(ROS_TOOLS_REQUIRED) DP_REQUIRE_TYPECHECK=1 \
		DP_REQUIRE_KERNEL=1 scripts/netns.sh $(PY) -m pytest -q -p no:cacheprovider

# Every benchmark but the soak, one after another; each prints ratios measured within its own run
# (bench/node.py and bench/soak.py start DDS, so all run in the loopback-only namespace). Each
# records its goals; the last step prints them as one Markdown table (also written to
# bench_out/goals.md), the table the README quotes. `make soak` (the node for 10 minutes) adds its
# rows to the same table.
BENCH_GOALS := bench_out/goals.jsonl
BENCHES := regions stereo_frame clouds accuracy segmentation inference node gpu
bench: msgs
	mkdir -p bench_out && rm -f $(BENCH_GOALS)
	status=0; for b in $(BENCHES); do \
		echo "== bench/$$b.py"; DP_BENCH_GOALS=$(BENCH_GOALS) scripts/netns.sh $(PY) bench/$$b.py \
		|| status=1; done; \
	echo "== goals"; $(PY) bench/goals.py $(BENCH_GOALS) --markdown bench_out/goals.md; exit $$status

soak: msgs
	mkdir -p bench_out
	status=0; DP_BENCH_GOALS=$(BENCH_GOALS) scripts/netns.sh $(PY) bench/soak.py || status=1; \
	echo "== goals"; $(PY) bench/goals.py $(BENCH_GOALS) --markdown bench_out/goals.md; exit $$status

# The GPU path (TensorRT) against the engine's own time, alone (`make bench` runs it too: on a
# machine without an NVIDIA GPU it says why it measured nothing and records the goal as not
# measured), adding its rows to the same table.
bench-gpu: $(VENV)/.base
	mkdir -p bench_out
	status=0; DP_BENCH_GOALS=$(BENCH_GOALS) $(PY) bench/gpu.py || status=1; \
	echo "== goals"; $(PY) bench/goals.py $(BENCH_GOALS) --markdown bench_out/goals.md; exit $$status

clean:
	rm -rf build install log demo_out bench_out
