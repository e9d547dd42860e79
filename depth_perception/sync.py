"""Transport-independent message timing: a stamp synchroniser and a short newest-frames queue.

The ROS node and the bag processor feed both with (input name, stamp in ns, message); nothing here
knows about ROS. message_filters is not needed (and not installable everywhere).
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass
class SyncStats:
    matched: int = 0
    #: primary messages discarded because a newer one was matched first or no partner arrived.
    dropped: int = 0
    received: dict[str, int] = field(default_factory=dict)
    #: other inputs' messages that never joined a set (no primary with their stamp came, or it was
    #: matched without them), per input.
    discarded: dict[str, int] = field(default_factory=dict)
    #: sets released without an optional input (its wait ran out), per input.
    released_without: dict[str, int] = field(default_factory=dict)


class StampSynchronizer:
    """Groups one message per input whose stamps lie within ``slop_ns`` of the primary's stamp.

    ``primary`` (the colour image) drives the output; every other required input must have a
    message within the slop (``slop_ns=0``: exact stamps). Queues are bounded by ``queue_size`` per
    input, so a missing input never grows memory. When a set completes, older primaries can no
    longer be used and are counted as dropped, and other inputs' messages older than it are
    discarded and counted: a late frame never gets paired with another frame's data.

    ``optional`` inputs (masks or detections from a slower node) join a set when their message
    arrives in time; a primary waits for them up to ``optional_wait_ns`` of the caller's clock
    (``now_ns``: monotonic time in a node, log time in a bag) or until it or one of its partners
    would be pushed out of a full queue, then it is released without them. With
    ``optional_wait_ns=0`` they join only when already there; so do the optional inputs named in
    ``no_wait`` (a metric signal that may or may not exist: never worth delaying depth for). Call
    :meth:`poll` from a timer so that a wait can end without a new message.
    """

    def __init__(self, inputs: list[str], primary: str, slop_ns: int = 0, queue_size: int = 5,
                 optional: tuple[str, ...] = (), optional_wait_ns: int = 0,
                 no_wait: tuple[str, ...] = ()):
        if primary not in inputs:
            raise ValueError(f"primary input {primary!r} is not one of {inputs}")
        if queue_size < 1:
            raise ValueError("queue_size must be >= 1")
        if slop_ns < 0:
            raise ValueError("slop must be >= 0")
        if optional_wait_ns < 0:
            raise ValueError("optional_wait_ns must be >= 0")
        self.inputs = list(inputs)
        self.primary = primary
        self.slop_ns = int(slop_ns)
        self.queue_size = int(queue_size)
        unknown = [n for n in optional if n not in inputs or n == primary]
        if unknown:
            raise ValueError(f"optional inputs {unknown} must be non-primary inputs of {inputs}")
        self.optional = tuple(optional)
        self.optional_wait_ns = int(optional_wait_ns)
        if not set(no_wait) <= set(self.optional):
            raise ValueError(f"no_wait inputs {list(no_wait)} must be optional inputs {list(optional)}")
        self.no_wait = tuple(no_wait)
        # entries: (stamp_ns, message, arrival on the caller's clock or None)
        self._queues: dict[str, deque[tuple[int, Any, int | None]]] = {n: deque() for n in inputs}
        self._lock = threading.Lock()
        others = [n for n in inputs if n != primary]
        self.stats = SyncStats(received={n: 0 for n in inputs}, discarded={n: 0 for n in others},
                               released_without={n: 0 for n in self.optional})

    def add(self, name: str, stamp_ns: int, msg: Any, now_ns: int | None = None) -> dict[str, Any] | None:
        """Add a message; return the newest complete set {input: message} it completes, or None."""
        if name not in self._queues:
            raise KeyError(f"unknown input {name!r}")
        with self._lock:
            q = self._queues[name]
            q.append((int(stamp_ns), msg, now_ns))
            self.stats.received[name] += 1
            group = self._try_match(now_ns)
            while len(q) > self.queue_size:
                q.popleft()
                if name == self.primary:
                    self.stats.dropped += 1
                else:
                    self.stats.discarded[name] += 1
            return group

    def poll(self, now_ns: int | None) -> dict[str, Any] | None:
        """The newest set whose optional wait has run out by ``now_ns`` (None: stop waiting), or None."""
        with self._lock:
            return self._try_match(now_ns)

    def _waiting(self, index: int, arrival: int | None, now_ns: int | None) -> bool:
        """Whether primary ``index`` still waits for a missing optional input."""
        if self.optional_wait_ns <= 0 or now_ns is None or arrival is None:
            return False
        if index == 0 and any(len(q) > self.queue_size for q in self._queues.values()):
            return False  # it or a partner is about to be pushed out: release it rather than lose it
        return now_ns - arrival < self.optional_wait_ns

    def _try_match(self, now_ns: int | None) -> dict[str, Any] | None:
        primaries = self._queues[self.primary]
        for index in range(len(primaries) - 1, -1, -1):
            stamp, msg, arrival = primaries[index]
            chosen: dict[str, Any] = {self.primary: msg}
            picks: dict[str, int] = {}
            missing: list[str] = []
            for name in self.inputs:
                if name == self.primary:
                    continue
                best = self._nearest(self._queues[name], stamp)
                if best is None:
                    if name in self.optional and (name in self.no_wait
                                                  or not self._waiting(index, arrival, now_ns)):
                        missing.append(name)
                        continue
                    break
                picks[name] = best
                chosen[name] = self._queues[name][best][1]
            else:
                # Consume the matched primary and everything older than it; other inputs lose
                # their pick and everything stamped before this set (no older primary is left).
                self.stats.dropped += index
                for _ in range(index + 1):
                    primaries.popleft()
                for name in self.inputs:
                    if name == self.primary:
                        continue
                    q = self._queues[name]
                    for _ in range(picks.get(name, -1) + 1):
                        q.popleft()
                    stale = 0
                    while q and q[0][0] < stamp - self.slop_ns:
                        q.popleft()
                        stale += 1
                    self.stats.discarded[name] += picks.get(name, 0) + stale  # older than the pick
                for name in missing:
                    self.stats.released_without[name] += 1
                self.stats.matched += 1
                return chosen
        return None

    def _nearest(self, q: deque[tuple[int, Any, int | None]], stamp_ns: int) -> int | None:
        best, best_dt = None, None
        for i, (s, _, _) in enumerate(q):
            dt = abs(s - stamp_ns)
            if dt <= self.slop_ns and (best_dt is None or dt < best_dt):
                best, best_dt = i, dt
        return best

    def pending(self) -> dict[str, int]:
        with self._lock:
            return {n: len(q) for n, q in self._queues.items()}


class LatestQueue(Generic[T]):
    """A mailbox of at most ``capacity`` items between I/O callbacks and a worker, taken oldest
    first. When it is full the oldest waiting item makes room for the new one (counted in
    ``dropped``): a slow consumer sees fresh data and memory stays flat. ``capacity`` 1 is "the
    newest frame wins"; 2 lets a consumer that keeps up on average ride out one slow item without
    dropping any, at the cost of at most one item of extra latency."""

    def __init__(self, capacity: int = 1) -> None:
        if int(capacity) < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity!r}")
        self.capacity = int(capacity)
        self._cond = threading.Condition()
        self._items: deque[T] = deque()
        self._closed = False
        self.dropped = 0
        self.taken = 0

    def put(self, item: T) -> bool:
        """Store ``item``; return True when the oldest waiting item was dropped to make room."""
        with self._cond:
            dropped = len(self._items) >= self.capacity
            if dropped:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self._cond.notify()
            return dropped

    def take(self, timeout: float | None = None) -> T | None:
        """Wait for an item (up to ``timeout`` s) and return the oldest; None on timeout or once
        closed."""
        with self._cond:
            if not self._cond.wait_for(lambda: bool(self._items) or self._closed, timeout):
                return None
            if not self._items:
                return None
            self.taken += 1
            return self._items.popleft()

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class MissingCameraInfo(ValueError):
    """An image arrived before any CameraInfo of its size."""


@dataclass(frozen=True)
class CameraInfoMatch:
    """The CameraInfo an image is paired with, and how far apart their stamps are."""

    msg: Any
    stamp_ns: int
    #: |image stamp - CameraInfo stamp|, seconds
    age_s: float
    #: one line when ``age_s`` exceeds the store's ``max_age_s``, else ""
    warning: str = ""


@dataclass
class CameraInfoStats:
    received: int = 0
    paired: int = 0
    #: pairings whose CameraInfo was more than ``max_age_s`` away from the image
    stale: int = 0
    #: images with no CameraInfo of their size yet
    missing: int = 0
    last_age_s: float = 0.0
    max_age_seen_s: float = 0.0


class CameraInfoStore:
    """The latest CameraInfo per image size: calibration, not a per-frame signal.

    A camera driver may publish CameraInfo seldom (1 Hz) or stamp it apart from the images, so an
    image is paired with a recent CameraInfo describing an image of its size (``size``: width and
    height after binning and ROI) rather than only one with its exact stamp: of the last
    ``recent`` of that size, the one stamped nearest the image (the newest on a tie). A driver
    that stamps CameraInfo with its images thus gets exact pairs even when CameraInfo messages
    arrive out of order or ahead of their images. Pairings further than ``max_age_s`` apart are counted and described (``0``: never).
    At most ``max_sizes`` sizes are kept; the one updated longest ago goes first. ``topic`` only
    names the input in messages.
    """

    def __init__(self, topic: str = "camera_info", max_age_s: float = 0.0, max_sizes: int = 4,
                 recent: int = 8):
        if max_sizes < 1:
            raise ValueError("max_sizes must be >= 1")
        if recent < 1:
            raise ValueError("recent must be >= 1")
        if max_age_s < 0:
            raise ValueError("max_age_s must be >= 0")
        self.topic = topic
        self.max_age_s = float(max_age_s)
        self.max_sizes = int(max_sizes)
        self.recent = int(recent)
        # size → its last `recent` (stamp_ns, msg), oldest first; insertion order = age of sizes
        self._latest: dict[tuple[int, int], deque[tuple[int, Any]]] = {}
        self._lock = threading.Condition()
        self.stats = CameraInfoStats()

    def add(self, size: tuple[int, int], stamp_ns: int, msg: Any) -> None:
        """Keep ``msg`` (stamped ``stamp_ns``) as the latest CameraInfo of ``size`` (w, h)."""
        key = (int(size[0]), int(size[1]))
        with self._lock:
            self.stats.received += 1
            kept = self._latest.pop(key, None) or deque(maxlen=self.recent)
            kept.append((int(stamp_ns), msg))
            self._latest[key] = kept
            while len(self._latest) > self.max_sizes:
                del self._latest[next(iter(self._latest))]
            self._lock.notify_all()

    def sizes(self) -> list[tuple[int, int]]:
        with self._lock:
            return list(self._latest)

    def lookup(self, size: tuple[int, int], stamp_ns: int, wait_s: float = 0.0) -> CameraInfoMatch:
        """The CameraInfo for an image of ``size`` (w, h) stamped ``stamp_ns``, waiting up to
        ``wait_s`` seconds for one of that size to arrive (a driver publishes the image and its
        CameraInfo at the same moment: at start-up the image may be first); raises
        :class:`MissingCameraInfo` naming the topic and the sizes seen when there is none."""
        key = (int(size[0]), int(size[1]))
        with self._lock:
            if wait_s > 0:
                self._lock.wait_for(lambda: key in self._latest, timeout=wait_s)
            kept = self._latest.get(key)
            stamp_ns = int(stamp_ns)
            # nearest stamp; on a tie the newest (max over reversed order keeps the first best)
            found = None if not kept else min(
                reversed(kept), key=lambda entry: abs(entry[0] - int(stamp_ns)))
            if found is None:
                self.stats.missing += 1
                have = ", ".join(f"{w}x{h}" for w, h in self._latest) or "none"
                raise MissingCameraInfo(f"no CameraInfo for a {key[0]}x{key[1]} image yet on "
                                        f"{self.topic} (have: {have})")
            info_ns, msg = found
            age_s = abs(stamp_ns - info_ns) * 1e-9
            s = self.stats
            s.paired += 1
            s.last_age_s = age_s
            s.max_age_seen_s = max(s.max_age_seen_s, age_s)
            warning = ""
            if self.max_age_s > 0 and age_s > self.max_age_s:
                s.stale += 1
                warning = (f"CameraInfo on {self.topic} is {age_s:.2f} s away from the "
                           f"{key[0]}x{key[1]} image it calibrates (camera_info.max_age "
                           f"{self.max_age_s:g} s)")
            return CameraInfoMatch(msg, info_ns, age_s, warning)
