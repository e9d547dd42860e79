"""Makes the helpers shared across test directories (``stereo_rig.py``, ``motion_scene.py``)
importable from all of them: pytest puts the directory of every conftest.py on sys.path."""

import signal
import threading

import pytest


@pytest.fixture(autouse=True)
def default_sigint_handler():
    """Every test starts with Python's own SIGINT handler. An ignored SIGINT survives exec, so if a
    library earlier in this process left it ignored, the node, launch and CLI processes a test
    starts would shrug off the Ctrl-C the test sends them."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
