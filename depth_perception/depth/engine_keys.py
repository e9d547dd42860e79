"""Engine cache keys and file names: what an engine depends on, and where its files go.

An engine is only valid for the exact ONNX graph, TensorRT version, GPU model, precision and input
shape range it was built for, so the cache key is all of them::

    key = (sha256 of the ONNX bytes, TensorRT version, GPU name, compute capability,
           precision, shape profiles)

An int8 engine's calibration images are not in the key: the node knows the model, size and
precision but not the images ``build-engine --int8 --calib DIR`` used, and must find that engine by
itself. Their id (:func:`calibration_id`) is recorded in the engine's sidecar instead, shown when
the engine is used, and a build with other images replaces the entry (one int8 engine per model,
size, GPU and TensorRT).

File names in a cache directory (default ``~/.cache/depth_perception/engines``, or
``$DEPTH_PERCEPTION_CACHE``)::

    <onnx stem>.<precision>.<profile>.<16 hex of the key digest>.engine   serialized engine
    <same name>.json                                                       its sidecar
    <onnx stem>.<16 hex onnx>.<16 hex calibration>.<opt HxW>.calib         int8 calibration table

Pure: hashing files, no TensorRT, no GPU.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .engine_profiles import InputProfile, ShapeProfile, format_hw

ENV_CACHE_DIR = "DEPTH_PERCEPTION_CACHE"
PRECISIONS = ("fp32", "fp16", "int8")
_CHUNK = 1 << 20


class EngineCacheError(ValueError):
    """A cache entry or a cache argument is unusable."""


def sha256_file(path: Path | str) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks (ONNX files can be gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else ``ValueError`` listing them."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    return precision


@dataclass(frozen=True)
class EngineKey:
    """Everything a serialized engine depends on; equal keys mean interchangeable engines."""

    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: tuple[int, int]
    precision: str
    profile: ShapeProfile
    # Shape profiles of further dynamic inputs (e.g. Prompt Depth Anything's prompt_depth, SAM's
    # point_coords / point_labels).
    extra_profiles: tuple[tuple[str, InputProfile], ...] = ()

    def __post_init__(self) -> None:
        check_precision(self.precision)
        if not re.fullmatch(r"[0-9a-f]{64}", self.onnx_sha256):
            raise ValueError(f"onnx_sha256 must be 64 lowercase hex digits, got {self.onnx_sha256!r}")

    def fields(self) -> dict[str, Any]:
        """JSON-ready key fields (what the sidecar records and the digest covers)."""
        return {
            "onnx_sha256": self.onnx_sha256,
            "tensorrt_version": self.tensorrt_version,
            "gpu_name": self.gpu_name,
            "compute_capability": list(self.compute_capability),
            "precision": self.precision,
            "profile": self.profile.as_dict(),
            # Keys once held an int8 engine's calibration images here (now in its sidecar); the
            # field stays, always empty, so the digests of engines cached before are unchanged.
            "calibration_id": "",
            "extra_profiles": {name: p.as_dict() for name, p in self.extra_profiles},
        }

    def digest(self) -> str:
        """sha256 of the canonical JSON of :meth:`fields`: stable across runs, machines, Pythons."""
        canonical = json.dumps(self.fields(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def file_name(self, stem: str = "model") -> str:
        """``<stem>.<precision>.<profile>.<digest16>.engine``: readable and collision-safe."""
        return f"{_safe_stem(stem)}.{self.precision}.{self.profile.token()}.{self.digest()[:16]}.engine"


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def list_calibration_images(directory: Path | str, limit: int | None = None) -> list[Path]:
    """Image files directly in ``directory``, sorted by name, at most ``limit`` (evenly spread)."""
    root = Path(directory)
    if not root.is_dir():
        raise ValueError(f"calibration folder {root} does not exist or is not a folder")
    images = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise ValueError(f"calibration folder {root} has no images ({', '.join(IMAGE_SUFFIXES)})")
    if limit is not None and 0 < limit < len(images):
        # Evenly spaced rather than the first N: folders are often consecutive video frames.
        picks = np.linspace(0, len(images) - 1, limit).round().astype(int)
        images = [images[i] for i in sorted(set(picks.tolist()))]
    return images


def calibration_id(images: Sequence[Path | str], preprocess_id: str = "") -> str:
    """Hex sha256 over the calibration images' names and bytes (and the pre-processing's id):
    int8 engines and calibration tables depend on exactly these."""
    digest = hashlib.sha256(preprocess_id.encode("utf-8"))
    for p in images:
        digest.update(Path(p).name.encode("utf-8") + b"\0")
        digest.update(bytes.fromhex(sha256_file(p)))
    return digest.hexdigest()


def default_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$DEPTH_PERCEPTION_CACHE`` if set, else ``~/.cache/depth_perception/engines``."""
    env = os.environ if environ is None else environ
    override = env.get(ENV_CACHE_DIR, "").strip()
    if override:
        return Path(override).expanduser()
    return Path.home() / ".cache" / "depth_perception" / "engines"


def sidecar_path(engine_path: Path | str) -> Path:
    """``foo.engine`` -> ``foo.json`` (``foo.plan`` -> ``foo.json``; other names get ``.json`` added)."""
    p = Path(engine_path)
    return p.with_suffix(".json") if p.suffix in (".engine", ".plan", ".trt") else Path(f"{p}.json")


def _safe_stem(stem: str) -> str:
    """A file-name-safe, bounded form of a model name for cache file names."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_")[:64] or "model"


def calibration_cache_path(cache_dir: Path | str, onnx_sha256: str, calibration_id: str,
                           profile: ShapeProfile, stem: str = "model") -> Path:
    """Where TensorRT's int8 calibration table for (ONNX, images, input size) is kept."""
    return Path(cache_dir) / (f"{_safe_stem(stem)}.{onnx_sha256[:16]}.{calibration_id[:16]}."
                              f"{format_hw(profile.opt_hw)}.calib")
