"""depth_perception.sync.StampSynchronizer against the real message_filters synchronisers, fed the
same arrival sequences. Where the inputs arrive in stamp order the two give the same sets; where an
older set completes after a newer one, ours drops the older (latest-frame-wins: a robot acts on
the newest frame, and a worker busy with a stale frame delays every later one) while
message_filters still emits it. The README's "Synchronisation" section says the same."""

from __future__ import annotations

import numpy as np
import pytest

from depth_perception.sync import StampSynchronizer
from ros_checks import TOOLS_HINT, require_module

INPUTS = ["image", "camera_info", "sparse_depth"]


def _message(stamp_ns: int):
    from sensor_msgs.msg import Image

    msg = Image()
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    return msg


def _ns(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def run_both(arrivals: list[tuple[str, int]], slop_ns: int, queue_size: int = 5):
    """The stamp sets (one tuple per emitted group, in input order) from both synchronisers."""
    message_filters = require_module("message_filters", TOOLS_HINT)
    filters = {name: message_filters.SimpleFilter() for name in INPUTS}
    if slop_ns:
        theirs_sync = message_filters.ApproximateTimeSynchronizer(
            [filters[n] for n in INPUTS], queue_size, slop_ns * 1e-9)
    else:
        theirs_sync = message_filters.TimeSynchronizer([filters[n] for n in INPUTS], queue_size)
    theirs: list[tuple[int, ...]] = []
    theirs_sync.registerCallback(lambda *msgs: theirs.append(tuple(_ns(m) for m in msgs)))
    ours_sync = StampSynchronizer(INPUTS, primary="image", slop_ns=slop_ns, queue_size=queue_size)
    ours: list[tuple[int, ...]] = []
    for name, stamp in arrivals:
        msg = _message(stamp)
        filters[name].signalMessage(msg)
        group = ours_sync.add(name, stamp, msg)
        if group is not None:
            ours.append(tuple(_ns(group[n]) for n in INPUTS))
    return ours, theirs


def _in_order_streams(rng, n: int, jitter_ns: int, drop: float) -> list[tuple[str, int]]:
    """30 Hz camera with each input's copy of a frame jittered and sometimes lost, arriving in
    stamp order per frame (inputs shuffled within a frame)."""
    arrivals = []
    for i in range(n):
        base = 1_000_000_000 + i * 33_333_333
        frame = []
        for name in INPUTS:
            if rng.random() < drop:
                continue
            offset = 0 if name == "image" else int(rng.integers(-jitter_ns, jitter_ns + 1))
            frame.append((name, base + offset))
        rng.shuffle(frame)
        arrivals += frame
    return arrivals


@pytest.mark.parametrize("seed", range(5))
def test_exact_stamps_in_order_give_the_time_synchronizer_sets(seed):
    arrivals = _in_order_streams(np.random.default_rng(seed), 60, jitter_ns=0, drop=0.15)
    ours, theirs = run_both(arrivals, slop_ns=0)
    assert ours == theirs and len(ours) > 20


@pytest.mark.parametrize("seed", range(5))
def test_jittered_stamps_in_order_give_the_approximate_synchronizer_sets(seed):
    # jitter well inside the slop, frames 33 ms apart: one candidate per input and frame
    arrivals = _in_order_streams(np.random.default_rng(seed), 60, jitter_ns=2_000_000, drop=0.15)
    ours, theirs = run_both(arrivals, slop_ns=5_000_000)
    assert ours == theirs and len(ours) > 20


def test_an_older_set_completed_late_is_dropped_by_ours_and_emitted_by_message_filters():
    t1, t2 = 1_000_000_000, 1_033_333_333
    arrivals = [("image", t1), ("camera_info", t1),                 # frame 1 waits for depth
                ("image", t2), ("camera_info", t2), ("sparse_depth", t2),  # frame 2 completes
                ("sparse_depth", t1)]                               # frame 1's depth, late
    ours, theirs = run_both(arrivals, slop_ns=0)
    assert ours == [(t2, t2, t2)]
    assert theirs == [(t2, t2, t2), (t1, t1, t1)]
