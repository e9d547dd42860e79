# Two entry points that do their own set-up on a fresh machine:
#   make demo    the whole pipeline offline on generated data -> demo_out/
#   make test    the test suite (ROS tests inside a loopback-only network namespace)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q

.PHONY: demo test msgs clean

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

msgs: $(VENV)/.ros
	PYTHON=$(PY) scripts/build_msgs.sh
	@echo "vision_msgs: building the TEST STAND-IN (on a robot, ros-<distro>-vision-msgs is used)"
	PYTHON=$(PY) scripts/build_vision_msgs.sh

# DP_REQUIRE_ROS=1 / DP_REQUIRE_TYPECHECK=1 / DP_REQUIRE_KERNEL=1: the rclpy tests, the TensorRT
# type check and the compiled regions kernel must run here, not skip.
test: msgs
	DP_REQUIRE_ROS=1 DP_REQUIRE_TYPECHECK=1 DP_REQUIRE_KERNEL=1 scripts/netns.sh $(PY) -m pytest -q \
		-p no:cacheprovider

clean:
	rm -rf build install log demo_out
