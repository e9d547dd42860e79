"""The loss history of a training run and its curves.

``history.csv`` holds one row per optimiser step (:data:`HISTORY_FIELDS`: the step, learning rate,
loss terms, held-out AbsRel / delta1 where evaluated, and cumulative training seconds);
``loss_curves.png`` plots the loss (log scale, raw and smoothed) and the held-out AbsRel against the
step, with matplotlib when installed, else with OpenCV.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

HISTORY_FIELDS = ("step", "lr", "total", "si", "grad", "normal", "eval_abs_rel", "eval_delta1", "seconds")


def read_history(path: Path, up_to_step: int) -> list[dict[str, Any]]:
    """The rows of ``path`` up to and including ``up_to_step`` (numbers as float, blanks as None);
    [] when there is no such file."""
    if not path.is_file():
        return []
    with path.open() as f:
        rows = [{k: (float(v) if v not in ("", None) else None) for k, v in r.items()} for r in csv.DictReader(f)]
    return [r for r in rows if r["step"] is not None and r["step"] <= up_to_step]


def write_history(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Write ``rows`` as CSV with the :data:`HISTORY_FIELDS` columns, atomically."""
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=HISTORY_FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in HISTORY_FIELDS})
    os.replace(tmp, path)


def plot_curves(rows: Sequence[dict[str, Any]], path: str | os.PathLike, title: str = "") -> Path:
    """Loss (log scale, raw and smoothed) and held-out AbsRel against step, as a PNG. Uses
    matplotlib when installed, else draws with OpenCV (always available)."""
    path = Path(path)
    steps = np.array([r["step"] for r in rows if r.get("total") is not None], np.float64)
    loss = np.array([r["total"] for r in rows if r.get("total") is not None], np.float64)
    ev = [(r["step"], r["eval_abs_rel"]) for r in rows if r.get("eval_abs_rel") is not None]
    smooth = _ema(loss, 0.9) if loss.size else loss
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return _plot_cv2(steps, loss, smooth, ev, path, title)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].semilogy(steps, loss, alpha=0.3, label="loss")
    axes[0].semilogy(steps, smooth, label="smoothed")
    axes[0].set_xlabel("step")
    axes[0].legend()
    if ev:
        axes[1].plot(*zip(*ev), marker="o")
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("held-out AbsRel")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _ema(x: np.ndarray, k: float) -> np.ndarray:
    """Exponential moving average y[i] = k y[i-1] + (1-k) x[i], started at x[0]."""
    from scipy.signal import lfilter

    y, _ = lfilter([1.0 - k], [1.0, -k], x, zi=[k * x[0]])
    return np.asarray(y)


def _plot_cv2(steps: np.ndarray, loss: np.ndarray, smooth: np.ndarray, ev: list, path: Path, title: str) -> Path:
    import cv2

    H, W, pad = 360, 480, 50
    canvas = np.full((H, 2 * W, 3), 255, np.uint8)

    def panel(x0: int, xs: np.ndarray, series: list[tuple[np.ndarray, tuple[int, int, int]]], log: bool,
              label: str) -> None:
        cv2.rectangle(canvas, (x0 + pad, 20), (x0 + W - 15, H - pad), (0, 0, 0), 1)
        cv2.putText(canvas, label, (x0 + pad, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        ys_all = np.concatenate([s for s, _ in series]) if series else np.array([])
        ys_all = ys_all[np.isfinite(ys_all) & ((ys_all > 0) if log else True)]
        if xs.size == 0 or ys_all.size == 0:
            return
        f = np.log10 if log else (lambda v: v)
        lo, hi = float(f(ys_all).min()), float(f(ys_all).max())
        hi = hi if hi > lo else lo + 1e-6
        x_lo, x_hi = float(xs.min()), float(xs.max()) if xs.max() > xs.min() else float(xs.min()) + 1

        def px(x: np.ndarray, y: np.ndarray) -> np.ndarray:
            u = x0 + pad + (x - x_lo) / (x_hi - x_lo) * (W - pad - 15)
            v = (H - pad) - (f(np.maximum(y, 1e-12) if log else y) - lo) / (hi - lo) * (H - pad - 20)
            return np.stack([u, v], 1).astype(np.int32)

        for ys, colour in series:
            pts = px(xs, ys)
            cv2.polylines(canvas, [pts.reshape(-1, 1, 2)], False, colour, 1, cv2.LINE_AA)
            if len(pts) < 30:
                for p in pts:
                    cv2.circle(canvas, tuple(int(c) for c in p), 3, colour, -1)
        for frac in (0.0, 0.5, 1.0):
            val = lo + frac * (hi - lo)
            txt = f"{10 ** val:.3g}" if log else f"{val:.3g}"
            v = int((H - pad) - frac * (H - pad - 20))
            cv2.putText(canvas, txt, (x0 + 2, v + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
        for frac in (0.0, 0.5, 1.0):
            u = int(x0 + pad + frac * (W - pad - 15))
            cv2.putText(canvas, f"{x_lo + frac * (x_hi - x_lo):.0f}", (u - 10, H - pad + 16),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(canvas, "step", (x0 + W // 2, H - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1,
                    cv2.LINE_AA)

    panel(0, steps, [(loss, (200, 200, 200)), (smooth, (180, 80, 0))], True, f"training loss {title}")
    if ev:
        xs, ys = (np.array(v, np.float64) for v in zip(*ev))
        panel(W, xs, [(ys, (0, 0, 200))], False, "held-out AbsRel")
    else:
        panel(W, np.array([]), [], False, "held-out AbsRel (no evaluation)")
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), canvas):
        raise OSError(f"{path}: could not write the loss curves")
    return path


__all__ = ["HISTORY_FIELDS", "plot_curves", "read_history", "write_history"]
