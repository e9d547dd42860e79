"""StampSynchronizer (pairs image + camera_info + depth by stamp) and LatestQueue (newest frames win
between the I/O callbacks and the worker). Plain Python: no ROS needed."""
from __future__ import annotations

import threading
import time
import tracemalloc

import pytest

from depth_perception.sync import (
    CameraInfoStore,
    LatestQueue,
    MissingCameraInfo,
    StampSynchronizer,
)

MS = 1_000_000  # nanoseconds


def _sync(slop_ms: float = 0, queue_size: int = 5, inputs=("image", "info")) -> StampSynchronizer:
    return StampSynchronizer(list(inputs), primary="image", slop_ns=int(slop_ms * MS),
                             queue_size=queue_size)


# -- StampSynchronizer ----------------------------------------------------------------------------


def test_exact_stamps_are_paired():
    sync = _sync()
    assert sync.add("image", 100 * MS, "img@100") is None  # waits for its camera_info
    assert sync.add("info", 100 * MS, "info@100") == {"image": "img@100", "info": "info@100"}
    assert sync.stats.matched == 1 and sync.stats.dropped == 0
    assert sync.pending() == {"image": 0, "info": 0}  # a matched set is consumed


def test_exact_mode_does_not_pair_stamps_one_nanosecond_apart():
    sync = _sync()
    sync.add("image", 100 * MS, "img")
    assert sync.add("info", 100 * MS + 1, "info") is None


@pytest.mark.parametrize("info_first", [False, True], ids=["image-first", "info-first"])
def test_arrival_order_does_not_matter(info_first):
    sync = _sync()
    arrivals = [("image", 5 * MS, "img"), ("info", 5 * MS, "info")]
    if info_first:
        arrivals.reverse()
    results = [sync.add(*a) for a in arrivals]
    assert results == [None, {"image": "img", "info": "info"}]


def test_slop_picks_the_nearest_partner():
    sync = _sync(slop_ms=10)
    for t in (92, 97, 104, 109):  # 97 is 3 ms away, 104 is 4 ms away
        assert sync.add("info", t * MS, f"info@{t}") is None
    assert sync.add("image", 100 * MS, "img@100") == {"image": "img@100", "info": "info@97"}
    # the chosen partner and everything older are used up; newer ones stay for the next image
    assert sync.pending() == {"image": 0, "info": 2}
    assert sync.add("image", 108 * MS, "img@108") == {"image": "img@108", "info": "info@109"}


def test_messages_outside_the_slop_are_never_paired():
    sync = _sync(slop_ms=5)
    sync.add("info", 94 * MS, "early")
    sync.add("info", 106 * MS, "late")
    assert sync.add("image", 100 * MS, "img") is None  # 6 ms either way: too far
    assert sync.add("info", 105 * MS, "edge") == {"image": "img", "info": "edge"}  # 5 ms: inside
    assert sync.stats.matched == 1


def test_three_inputs_need_all_partners():
    sync = _sync(slop_ms=2, inputs=("image", "info", "depth"))
    sync.add("image", 10 * MS, "img")
    assert sync.add("info", 10 * MS, "info") is None  # depth still missing
    assert sync.add("depth", 11 * MS, "depth") == {"image": "img", "info": "info", "depth": "depth"}


def test_an_older_unmatched_image_is_dropped_when_a_newer_set_completes():
    sync = _sync()
    sync.add("image", 1 * MS, "img1")  # its camera_info never comes
    sync.add("image", 2 * MS, "img2")
    assert sync.add("info", 2 * MS, "info2") == {"image": "img2", "info": "info2"}
    assert sync.stats.dropped == 1
    assert sync.pending()["image"] == 0
    # img1 cannot be paired later: a late camera_info for it finds nothing
    assert sync.add("info", 1 * MS, "info1") is None
    assert sync.stats.matched == 1


def test_queues_stay_bounded_when_an_input_never_arrives():
    sync = _sync(queue_size=4, inputs=("image", "info", "depth"))
    payload = bytes(10_000)
    tracemalloc.start()
    try:
        for i in range(100):
            sync.add("image", i * MS, bytes(payload))
            sync.add("info", i * MS, bytes(payload))
        warm, _ = tracemalloc.get_traced_memory()
        for i in range(100, 1100):  # depth never arrives
            assert sync.add("image", i * MS, bytes(payload)) is None
            assert sync.add("info", i * MS, bytes(payload)) is None
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sync.pending() == {"image": 4, "info": 4, "depth": 0}
    assert after - warm < len(payload)  # flat: 1000 more frames, not one more payload kept
    assert sync.stats.received == {"image": 1100, "info": 1100, "depth": 0}
    assert sync.stats.dropped == 1100 - 4  # every image pushed out of the queue is counted
    assert sync.stats.matched == 0


def test_unknown_input_raises_key_error():
    with pytest.raises(KeyError, match="'points'"):
        _sync().add("points", 0, "x")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"primary": "rgb"}, r"primary input 'rgb' is not one of"),
        ({"queue_size": 0}, r"queue_size must be >= 1"),
        ({"slop_ns": -1}, r"slop must be >= 0"),
    ],
)
def test_bad_constructor_arguments_raise_value_error(kwargs, message):
    args = {"inputs": ["image", "info"], "primary": "image"} | kwargs
    with pytest.raises(ValueError, match=message):
        StampSynchronizer(**args)


# -- LatestQueue -----------------------------------------------------------------------------------


def test_newest_item_wins_and_replaced_items_are_counted():
    slot: LatestQueue[int] = LatestQueue()
    assert slot.put(1) is False
    assert slot.put(2) is True  # 1 was never taken
    assert slot.put(3) is True
    assert slot.take(timeout=0) == 3
    assert (slot.dropped, slot.taken) == (2, 1)
    assert slot.put(4) is False  # the slot was emptied by take


def test_a_queue_of_two_keeps_the_two_newest_items_oldest_first():
    queue: LatestQueue[int] = LatestQueue(capacity=2)
    assert queue.put(1) is False and queue.put(2) is False  # room for both
    assert queue.put(3) is True  # full: 1 makes room
    assert len(queue) == 2
    assert [queue.take(timeout=0), queue.take(timeout=0)] == [2, 3]
    assert queue.take(timeout=0) is None
    assert (queue.dropped, queue.taken) == (1, 2)


def test_a_consumer_that_keeps_up_on_average_loses_nothing_with_capacity_two():
    """One slow item (a GC pause, a frame with many objects) between fast ones: a one-item slot
    drops the item that arrives meanwhile, a two-item queue delivers every item."""
    for capacity, dropped in ((1, 1), (2, 0)):
        queue: LatestQueue[int] = LatestQueue(capacity)
        queue.put(0)
        assert queue.take(timeout=0) == 0  # the worker starts on item 0, which is slow ...
        queue.put(1)
        queue.put(2)  # ... so two items arrive before it is done
        taken = [queue.take(timeout=0) for _ in range(2)]
        assert queue.dropped == dropped
        assert [x for x in taken if x is not None] == [1, 2][dropped:]


@pytest.mark.parametrize("capacity", [0, -1])
def test_a_queue_needs_room_for_one_item(capacity):
    with pytest.raises(ValueError, match="capacity must be >= 1"):
        LatestQueue(capacity)


def test_take_times_out_with_none():
    slot: LatestQueue[int] = LatestQueue()
    start = time.monotonic()
    assert slot.take(timeout=0.05) is None
    assert 0.04 < time.monotonic() - start < 1.0


def test_close_wakes_a_waiting_taker():
    slot: LatestQueue[int] = LatestQueue()
    got: list[object] = []
    taker = threading.Thread(target=lambda: got.append(slot.take()))  # no timeout: waits forever
    taker.start()
    time.sleep(0.05)
    assert taker.is_alive()
    slot.close()
    taker.join(timeout=1.0)
    assert not taker.is_alive() and got == [None]
    assert slot.take(timeout=None) is None  # closed and empty: returns at once


def test_fast_producer_and_slow_consumer_stay_bounded_and_fresh():
    slot: LatestQueue[int] = LatestQueue()
    n = 300
    taken: list[int] = []

    def consume():
        while (item := slot.take(timeout=1.0)) is not None:
            taken.append(item)
            time.sleep(0.002)  # slow worker

    def produce():
        for i in range(n):
            slot.put(i)
            time.sleep(0.0002)
        time.sleep(0.01)  # let the consumer see the last item, then shut down
        slot.close()

    start = time.monotonic()
    threads = [threading.Thread(target=consume), threading.Thread(target=produce)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=2.0)
    assert not any(t.is_alive() for t in threads)
    assert time.monotonic() - start < 2.0

    assert taken == sorted(taken) and len(set(taken)) == len(taken)  # in order, never twice
    assert taken[-1] == n - 1  # the newest item is delivered
    assert 0 < len(taken) < n  # the slow consumer skipped stale items instead of queueing them
    assert slot.taken + slot.dropped == n  # every item is either taken or counted as dropped


def test_optional_inputs_join_when_present_but_never_hold_a_set_back():
    sync = StampSynchronizer(["image", "info", "detections"], primary="image",
                             optional=("detections",))
    sync.add("detections", 10, "d10")
    sync.add("info", 10, "i10")
    assert sync.add("image", 10, "img10") == {"image": "img10", "info": "i10", "detections": "d10"}
    sync.add("info", 20, "i20")
    assert sync.add("image", 20, "img20") == {"image": "img20", "info": "i20"}


def test_optional_input_must_be_a_secondary_input():
    with pytest.raises(ValueError, match="optional"):
        StampSynchronizer(["image", "info"], primary="image", optional=("image",))


def _waiting_sync(wait_ms: float = 100, queue_size: int = 5) -> StampSynchronizer:
    return StampSynchronizer(["image", "info", "detections"], primary="image", queue_size=queue_size,
                             optional=("detections",), optional_wait_ns=int(wait_ms * MS))


def test_an_image_waits_for_its_detections_up_to_the_wait():
    sync = _waiting_sync(wait_ms=100)
    sync.add("info", 10, "i10", now_ns=0)
    assert sync.add("image", 10, "img10", now_ns=0) is None  # detections may still come
    assert sync.poll(now_ns=99 * MS) is None
    # the detector answers in time: they are paired
    assert sync.add("detections", 10, "d10", now_ns=99 * MS) == {
        "image": "img10", "info": "i10", "detections": "d10"}
    assert sync.stats.released_without == {"detections": 0}


def test_an_image_whose_detections_never_come_is_released_without_them():
    sync = _waiting_sync(wait_ms=100)
    sync.add("info", 10, "i10", now_ns=0)
    sync.add("image", 10, "img10", now_ns=0)
    assert sync.poll(now_ns=50 * MS) is None
    assert sync.poll(now_ns=100 * MS) == {"image": "img10", "info": "i10"}
    assert sync.stats.released_without == {"detections": 1} and sync.stats.dropped == 0
    # detections for it that come later match nothing: discarded and counted at the next set
    sync.add("detections", 10, "d10-late", now_ns=120 * MS)
    sync.add("info", 20, "i20", now_ns=130 * MS)
    sync.add("detections", 20, "d20", now_ns=130 * MS)
    assert sync.add("image", 20, "img20", now_ns=130 * MS)["detections"] == "d20"
    assert sync.stats.discarded == {"info": 0, "detections": 1}


def test_a_waiting_image_pushed_out_of_the_queue_is_released_not_lost():
    sync = _waiting_sync(wait_ms=10_000, queue_size=2)
    for k in range(2):
        sync.add("info", k, f"i{k}", now_ns=k)
        assert sync.add("image", k, f"img{k}", now_ns=k) is None
    # a third camera_info would push img0's out: img0 is released without detections instead
    assert sync.add("info", 2, "i2", now_ns=2) == {"image": "img0", "info": "i0"}
    assert sync.add("image", 2, "img2", now_ns=2) is None  # waits for its detections
    assert sync.stats.dropped == 0 and sync.stats.released_without == {"detections": 1}
    assert sync.poll(now_ns=None) == {"image": "img2", "info": "i2"}  # None: stop waiting
    assert sync.stats.dropped == 1  # img1, older than the released img2


def test_detections_with_a_stamp_of_no_image_are_never_paired_and_are_counted():
    sync = _waiting_sync(wait_ms=0)
    sync.add("detections", 15, "d15")  # between two frames
    sync.add("info", 10, "i10")
    assert sync.add("image", 10, "img10") == {"image": "img10", "info": "i10"}
    sync.add("info", 20, "i20")
    assert sync.add("image", 20, "img20") == {"image": "img20", "info": "i20"}
    assert sync.stats.discarded["detections"] == 1
    assert sync.pending()["detections"] == 0


def test_a_negative_wait_is_refused():
    with pytest.raises(ValueError, match="optional_wait_ns"):
        StampSynchronizer(["image", "info"], primary="image", optional_wait_ns=-1)


def test_a_no_wait_input_joins_when_there_and_is_never_waited_for():
    sync = StampSynchronizer(["image", "masks", "sparse_depth"], primary="image", slop_ns=5,
                             optional=("masks", "sparse_depth"), optional_wait_ns=1_000,
                             no_wait=("sparse_depth",))
    sync.add("sparse_depth", 100, "d100", now_ns=0)
    sync.add("masks", 100, "m100", now_ns=0)
    assert sync.add("image", 100, "i100", now_ns=0) == {"image": "i100", "masks": "m100",
                                                          "sparse_depth": "d100"}
    sync.add("masks", 200, "m200", now_ns=10)
    # no depth for 200: the image goes on at once instead of waiting the optional 1000 ns
    assert sync.add("image", 200, "i200", now_ns=10) == {"image": "i200", "masks": "m200"}
    assert sync.stats.released_without["sparse_depth"] == 1
    with pytest.raises(ValueError, match="no_wait"):
        StampSynchronizer(["image", "x"], primary="image", no_wait=("x",))


# -- CameraInfoStore ------------------------------------------------------------------------------


def test_an_image_takes_the_latest_camera_info_of_its_size_whatever_the_stamps():
    store = CameraInfoStore("/cam/camera_info", max_age_s=1.0)
    store.add((1280, 960), 0, "info960@0")
    store.add((1280, 720), 500 * MS, "info720@0.5")
    store.add((1280, 960), 1000 * MS, "info960@1.0")
    match = store.lookup((1280, 960), 2400 * MS)  # 1.4 s after the newest 960 one
    assert match.msg == "info960@1.0" and match.age_s == pytest.approx(1.4)
    assert "1.40 s" in match.warning and "camera_info.max_age 1 s" in match.warning
    close = store.lookup((1280, 720), 0)  # stamped before the image: the distance counts
    assert close.msg == "info720@0.5" and close.age_s == pytest.approx(0.5) and not close.warning
    assert (store.stats.paired, store.stats.stale) == (2, 1)
    assert store.stats.max_age_seen_s == pytest.approx(1.4)


def test_max_age_zero_never_warns():
    store = CameraInfoStore(max_age_s=0.0)
    store.add((640, 480), 0, "info")
    assert store.lookup((640, 480), 3_600_000 * MS).warning == ""
    assert store.stats.stale == 0


def test_an_image_before_any_camera_info_of_its_size_names_the_topic_and_the_sizes_seen():
    store = CameraInfoStore("/camera/camera_info")
    with pytest.raises(MissingCameraInfo, match=r"1280x720 image yet on /camera/camera_info "
                                                r"\(have: none\)"):
        store.lookup((1280, 720), 0)
    store.add((640, 480), 0, "info")
    with pytest.raises(ValueError, match=r"no CameraInfo for a 1280x720 image yet on "
                                         r"/camera/camera_info \(have: 640x480\)"):
        store.lookup((1280, 720), 0)
    assert store.stats.missing == 2


def test_the_store_keeps_a_handful_of_sizes_dropping_the_one_updated_longest_ago():
    store = CameraInfoStore(max_sizes=2)
    store.add((640, 480), 0, "a")
    store.add((320, 240), 0, "b")
    store.add((640, 480), 1, "a2")  # refreshed: now the newest
    store.add((160, 120), 2, "c")
    assert store.sizes() == [(640, 480), (160, 120)]
    with pytest.raises(MissingCameraInfo):
        store.lookup((320, 240), 0)


def test_a_lookup_may_wait_for_the_first_camera_info_published_with_the_image():
    store = CameraInfoStore()
    timer = threading.Timer(0.05, store.add, ((640, 480), 7, "info"))
    timer.start()
    try:
        assert store.lookup((640, 480), 7, wait_s=5.0).msg == "info"
    finally:
        timer.cancel()
    start = time.monotonic()
    with pytest.raises(MissingCameraInfo):
        store.lookup((320, 240), 0, wait_s=0.05)
    assert time.monotonic() - start < 2.0


def test_each_image_takes_the_camera_info_stamped_with_it_when_it_is_there():
    """A driver that stamps CameraInfo with its images: CameraInfo that arrived ahead of its image
    (or out of order) still pairs exactly, so one bad CameraInfo (K all zero, say) calibrates its
    own frame only."""
    store = CameraInfoStore("/cam/camera_info")
    size = (640, 480)
    for stamp, msg in ((100, "good 100"), (300, "good 300"), (200, "bad 200")):  # out of order
        store.add(size, stamp, msg)
    assert store.lookup(size, 100).msg == "good 100"
    assert store.lookup(size, 200).msg == "bad 200"
    assert store.lookup(size, 300).msg == "good 300"  # not the newest received (200)
    assert store.lookup(size, 250).msg in ("bad 200", "good 300")  # a tie: the newest received
    assert store.lookup(size, 120).msg == "good 100"


def test_camera_info_stamped_apart_pairs_with_the_nearest_recent_one_without_waiting():
    store = CameraInfoStore("/cam/camera_info")
    size = (320, 240)
    store.add(size, 10_000_000_000, "a")
    assert store.lookup(size, 10_350_000_000).msg == "a"
    store.add(size, 11_000_000_000, "b")
    assert store.lookup(size, 10_350_000_000).msg == "a"
    assert store.lookup(size, 11_400_000_000).msg == "b"
