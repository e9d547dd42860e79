"""Engine files on disk: atomic writes, JSON sidecars, integrity checks and the build lock.

Beside every engine ``foo.engine`` lies its sidecar ``foo.json``: the key fields it was built for,
the engine's size in bytes and sha256, the ONNX Runtime validation results and, for int8, the
calibration images it was calibrated on (:class:`CalibrationRecord`; not part of the key). Both files are
written atomically (temporary file in the same directory, fsync, rename), the engine first: an
entry without its sidecar is an interrupted write and is reported as corrupt, never used. Reading
checks size and sha256 against the sidecar, so a truncated copy is caught here, with a message
naming the file, before TensorRT gets to crash on it.

No TensorRT import.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from .engine_keys import EngineCacheError, EngineKey, sidecar_path
from .engine_validation import ValidationReport

SIDECAR_VERSION = 1


class CorruptEngineError(EngineCacheError):
    """An engine file is truncated, altered, or not loadable; it names the file and the defect."""

    def __init__(self, path: Path | str, reason: str, message: str | None = None) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(message or f"engine file {self.path} is corrupt: {reason}; delete it to "
                         "rebuild (the TensorRT backend rebuilds cache entries by itself)")


class EngineKeyMismatchError(CorruptEngineError):
    """An engine file's sidecar records another configuration (model, GPU, TensorRT, precision...)."""

    def __init__(self, path: Path | str, recorded: object) -> None:
        self.recorded = recorded
        super().__init__(path, "built for another configuration",
                         f"engine file {path} was built for another configuration ({recorded!r}); "
                         "it will be rebuilt for this one")



@dataclass(frozen=True)
class CalibrationRecord:
    """The int8 calibration an engine was built with, as its sidecar records it: the images' id
    (:func:`.engine_keys.calibration_id`), how many, the folder they came from, the
    pre-processing's id."""

    calibration_id: str
    images: int
    directory: str
    preprocess_id: str = ""

    def describe(self) -> str:
        """``calibrated on 256 images from /data/calib (id 3f2a9c01d4e5b6a7)``."""
        return (f"calibrated on {self.images} images from {self.directory} "
                f"(id {self.calibration_id[:16]})")


def recorded_calibration(path: Path | str) -> CalibrationRecord | None:
    """The calibration recorded in an engine's sidecar; None when there is none (not int8, or an
    engine without sidecar). A malformed record is a :class:`CorruptEngineError`."""
    engine_path = Path(path)
    if not sidecar_path(engine_path).exists():
        return None
    record = read_sidecar(engine_path).get("calibration")
    if record is None:
        return None
    try:
        return CalibrationRecord(str(record["calibration_id"]), int(record["images"]),
                                 str(record["directory"]), str(record.get("preprocess_id", "")))
    except (TypeError, KeyError, ValueError) as exc:
        raise CorruptEngineError(engine_path, f"its sidecar's calibration record is malformed "
                                 f"({exc!r})") from None


def atomic_write_bytes(path: Path | str, data: bytes | bytearray | memoryview) -> Path:
    """Write ``data`` to ``path`` so readers see the old file or the whole new one, never a part.

    The temporary file lives in the target directory (rename is only atomic within a filesystem)
    and is fsynced before the rename, so a power cut cannot leave a renamed-but-empty engine.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    return target


@contextlib.contextmanager
def build_lock(engine_path: Path | str) -> Iterator[None]:
    """Hold an exclusive lock on ``<engine>.lock`` while building, so that processes started
    together (several nodes of one launch file) build an engine once; the others wait, then find
    it in the cache. Advisory (flock), released when the process dies."""
    import fcntl  # POSIX only; imported here so the module still imports elsewhere

    lock_path = Path(f"{engine_path}.lock")
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        f = open(lock_path, "a+b")
    except OSError:
        yield  # a read-only cache: nothing will be stored anyway, so nothing to serialise
        return
    with f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def atomic_write_json(path: Path | str, obj: Mapping[str, Any]) -> Path:
    text = json.dumps(obj, indent=2, sort_keys=True) + "\n"
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_engine_file(path: Path | str, engine: bytes, key: EngineKey | None = None,
                      report: ValidationReport | None = None,
                      calibration: CalibrationRecord | None = None) -> Path:
    """Write an engine and its JSON sidecar (engine first, both atomic)."""
    if not engine:
        raise ValueError("refusing to write an empty engine")
    target = atomic_write_bytes(path, engine)
    sidecar: dict[str, Any] = {
        "sidecar_version": SIDECAR_VERSION,
        "engine_file": target.name,
        "engine_bytes": len(engine),
        "engine_sha256": hashlib.sha256(engine).hexdigest(),
        "created_unix": round(time.time(), 3),
        "key": key.fields() if key is not None else None,
        "key_digest": key.digest() if key is not None else None,
        "validation": [r.as_dict() for r in report.results] if report is not None else None,
        "calibration": asdict(calibration) if calibration is not None else None,
    }
    atomic_write_json(sidecar_path(target), sidecar)
    return target


def read_sidecar(path: Path | str) -> dict[str, Any]:
    """The sidecar of an engine file (``CorruptEngineError`` naming the engine if unreadable)."""
    engine_path = Path(path)
    side = sidecar_path(engine_path)
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CorruptEngineError(engine_path, f"its sidecar {side.name} is missing "
                                 "(an interrupted write?)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptEngineError(engine_path, f"its sidecar {side.name} is unreadable ({exc})") from None
    if not isinstance(data, dict):
        raise CorruptEngineError(engine_path, f"its sidecar {side.name} is not a JSON object")
    return data


def read_engine_file(path: Path | str, key: EngineKey | None = None,
                     require_sidecar: bool = False) -> bytes | None:
    """Read a serialized engine, checking it against its sidecar when there is one.

    Returns ``None`` when the engine file does not exist. A user-supplied engine without sidecar is
    accepted unless ``require_sidecar``; with a sidecar, its size and sha256 must match (a truncated
    copy or a partial download is caught here, with a message naming the file, before TensorRT
    gets to crash on it), and so must the key when one is given.
    """
    engine_path = Path(path)
    try:
        data = engine_path.read_bytes()
    except FileNotFoundError:
        return None
    if not data:
        raise CorruptEngineError(engine_path, "it is empty (0 bytes)")
    side = sidecar_path(engine_path)
    if not side.exists() and not require_sidecar:
        return data
    meta = read_sidecar(engine_path)
    expected = meta.get("engine_bytes")
    if isinstance(expected, int) and expected != len(data):
        how = "truncated" if len(data) < expected else "longer than recorded"
        raise CorruptEngineError(engine_path, f"it is {how}: {len(data)} bytes, the sidecar "
                                 f"records {expected}")
    if meta.get("engine_sha256") != hashlib.sha256(data).hexdigest():
        raise CorruptEngineError(engine_path, "its sha256 differs from the one in its sidecar")
    if key is not None and meta.get("key_digest") != key.digest():
        raise EngineKeyMismatchError(engine_path, meta.get("key"))
    return data
