"""rosbag2 files through `rosbags` (no ROS install needed): mcap or sqlite3."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from .messages import MessageTypes, rosbags_types


class BagWriter:
    """Writes messages of :func:`rosbags_types` classes to a new rosbag2; one connection per topic.

    Use as a context manager so the metadata is always written, even when processing fails midway.
    """

    def __init__(
        self,
        path: str | Path,
        storage: str = "mcap",
        types: MessageTypes | None = None,
        overwrite: bool = False,
    ) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        self.path = Path(path)
        if self.path.exists():
            if not overwrite:
                raise FileExistsError(f"{self.path}: output bag already exists")
            shutil.rmtree(self.path)
        plugins = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
        if storage not in plugins:
            raise ValueError(f"bag storage must be mcap or sqlite3, got {storage!r}")
        self.types = types or rosbags_types()
        self._writer = Writer(self.path, version=9, storage_plugin=plugins[storage])
        self._connections: dict[str, Any] = {}
        self.counts: dict[str, int] = {}

    def __enter__(self) -> BagWriter:
        self._writer.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self._writer.close()

    def write(self, topic: str, msg: Any, stamp_ns: int) -> None:
        """Serialise ``msg`` to CDR and append it under ``topic`` at log time ``stamp_ns``."""
        ts = self.types.typestore
        conn = self._connections.get(topic)
        if conn is None:
            conn = self._writer.add_connection(topic, msg.__msgtype__, typestore=ts)
            self._connections[topic] = conn
        self._writer.write(conn, int(stamp_ns), ts.serialize_cdr(msg, msg.__msgtype__))
        self.counts[topic] = self.counts.get(topic, 0) + 1


def read_bag(path: str | Path, topics: list[str] | None = None):
    """Yield (topic, msgtype, stamp_ns, message) in log-time order from a rosbag2 folder or file."""
    from rosbags.highlevel import AnyReader

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such bag")
    with AnyReader([p], default_typestore=rosbags_types().typestore) as reader:
        conns = [c for c in reader.connections if topics is None or c.topic in topics]
        for conn, stamp_ns, raw in reader.messages(connections=conns):
            yield conn.topic, conn.msgtype, stamp_ns, reader.deserialize(raw, conn.msgtype)
