"""Writing and calibrating student weights files: what training adds to the compact student.

The network, its configuration and the reading side of its weights files are the depth engine's
(:mod:`depth_perception.depth.student`); this module writes such files (the configuration and
preprocessing in the safetensors metadata, byte-for-byte reproducible) and folds a global output
affine into a trained network.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..depth.student import ARCHITECTURE, DEFAULT_NAME, OUTPUT_KIND, default_weights_path

DEFAULT_CARD = "student_tabletop.json"


def parameter_bytes(model: Any) -> int:
    """Bytes of the float32 weights and buffers a safetensors file of ``model`` holds."""
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def save_student(model: Any, path: str | os.PathLike, name: str = DEFAULT_NAME,
                 extra: dict[str, str] | None = None) -> Path:
    """Write the weights with the configuration and preprocessing in the safetensors metadata."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"student weights are written as .safetensors, got {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": "pt", "architecture": ARCHITECTURE, "name": name,
            "output": OUTPUT_KIND, "config": model.config.to_json()}
    meta.update({k: str(v) for k, v in (extra or {}).items()})
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()
          if not k.endswith("num_batches_tracked")}
    tmp = path.with_suffix(".safetensors.tmp")
    save_file(sd, str(tmp), metadata=meta)
    _sort_metadata(tmp)
    os.chmod(tmp, 0o644)  # safetensors writes 0600; a file shipped as package data must be readable
    os.replace(tmp, path)
    return path


def _sort_metadata(path: Path) -> None:
    """Rewrite the safetensors header with its metadata keys sorted. safetensors serialises metadata
    from a hash map in random order, so identical weights would give different bytes (and sha256)
    on every run; the bundled model must be byte-for-byte reproducible."""
    import struct

    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    if "__metadata__" in header:
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the format pads the header to 8-byte alignment with spaces
    path.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n:])


def default_card_path() -> Path:
    """The bundled student's model card, next to its weights (``depth_perception/data``)."""
    return default_weights_path().with_name(DEFAULT_CARD)


def calibrate_output(model: Any, predictions: list[Any], inverse_depths: list[Any]) -> tuple[float, float]:
    """Fold one global affine map into the output so that, over the given images, the student's raw
    output best matches true inverse depth (1/m) in least squares. The output stays *relative*
    (per-image scale and shift still vary); this only puts it in a familiar range.

    ``predictions``/``inverse_depths``: HxW arrays (current output / true 1/depth, NaN invalid)."""
    import numpy as np
    import torch

    p = np.concatenate([np.asarray(x, np.float64).ravel() for x in predictions])
    t = np.concatenate([np.asarray(x, np.float64).ravel() for x in inverse_depths])
    ok = np.isfinite(p) & np.isfinite(t)
    if ok.sum() < 2:
        raise ValueError("calibration needs at least 2 valid pixels")
    A = np.column_stack([p[ok], np.ones(ok.sum())])
    (a, b), *_ = np.linalg.lstsq(A, t[ok], rcond=None)
    with torch.no_grad():
        s0, t0 = float(model.output_scale), float(model.output_shift)
        model.output_scale.fill_(a * s0)
        model.output_shift.fill_(a * t0 + b)
    return float(a), float(b)


__all__ = ["DEFAULT_CARD", "calibrate_output", "default_card_path", "parameter_bytes", "save_student"]
