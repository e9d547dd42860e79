"""Depth losses (torch), every one masked so that invalid pixels neither count nor poison gradients.

Shapes: predictions, targets and masks are ``N x H x W`` (``N x 1 x H x W`` is accepted and
squeezed); intrinsics ``K`` are ``N x 3 x 3`` (or one ``3 x 3`` for the batch) in the pixels of
those maps. A pixel is valid where the mask (if given) is true, the target is finite (and > 0 for
depth) and the prediction is finite. Each loss is computed per image and averaged over the images
that have enough valid pixels; a batch with none gives 0 (with a gradient graph), never NaN.

* :func:`silog_loss` - scale-invariant log loss (Eigen et al.) on metric depth:
  ``L = mean(g^2) - lambda * mean(g)^2`` with ``g = log D_hat - log D``. With ``lambda = 1`` it is the
  variance of ``g``: blind to a global scale of the prediction.
* :func:`ssi_loss` - scale-and-shift-invariant loss on inverse depth (MiDaS, Depth Anything):
  prediction and target are each normalised per image by their own median and mean absolute
  deviation (so near and far scenes weigh alike, and a positive scale and any shift of the
  prediction do not matter while its sign does: far = large is wrong), then compared by the mean
  absolute difference of the pixels left after trimming the largest residuals (``trim``).
* :func:`gradient_matching_loss` - multi-scale gradient matching of a residual map.
* :func:`normal_loss` - 1 - cos between surface normals computed from depth and K.
* :func:`depth_loss` - the total ``L = L_si + alpha * L_grad + beta * L_normal`` in one of two
  modes: ``"ssi"`` (the prediction is relative inverse depth: affine-invariant training and
  distillation) and ``"silog"`` (the prediction is metric depth: metric fine-tuning).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

LossMode = Literal["ssi", "silog"]
TargetKind = Literal["depth", "inverse"]

_MIN_PIXELS = 2  # an alignment needs two pixels; fewer and the image is skipped
#: share of each image's largest SSI residuals left out (MiDaS' trimmed MAE): a few wrong
#: pseudo-labels or mixed pixels at edges do not dominate the gradient
SSI_TRIM = 0.2


class LossInputError(ValueError):
    """Tensors that a loss cannot compare (wrong shapes, missing K for normals, ...)."""


# ------------------------------------------------------------------------------------- helpers


def _as_nhw(x: Any, name: str) -> Any:
    import torch

    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(x)
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim == 2:
        x = x.unsqueeze(0)
    if x.ndim != 3:
        raise LossInputError(f"{name} must be N x H x W (or N x 1 x H x W / H x W), got {tuple(x.shape)}")
    return x


def _prepare(pred: Any, target: Any, mask: Any | None, positive_target: bool,
             positive_pred: bool = False) -> tuple[Any, Any, Any]:
    """(pred, target, valid) with invalid entries replaced by 1 so that no NaN/inf enters a graph."""
    import torch

    pred = _as_nhw(pred, "prediction")
    target = _as_nhw(target, "target").to(pred.dtype)
    if pred.shape != target.shape:
        raise LossInputError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    valid = torch.isfinite(target) & torch.isfinite(pred.detach())
    if positive_target:
        valid &= target > 0
    if positive_pred:
        valid &= pred.detach() > 0
    if mask is not None:
        m = _as_nhw(mask, "mask")
        if m.shape != pred.shape:
            raise LossInputError(f"mask {tuple(m.shape)} and prediction {tuple(pred.shape)} differ")
        valid &= m.bool()
    one = torch.ones((), dtype=pred.dtype, device=pred.device)
    # torch.where passes no gradient to the unselected branch, but NaN * 0 is still NaN: the
    # prediction is sanitised *before* any log/division touches it
    return torch.where(valid, pred, one), torch.where(valid, target, one), valid


def _masked_mean(x: Any, valid: Any) -> tuple[Any, Any]:
    """Per-image mean of ``x`` over ``valid`` (N,) and the per-image valid counts (N,)."""
    w = valid.to(x.dtype)
    n = w.sum(dim=(-2, -1))
    return (x * w).sum(dim=(-2, -1)) / n.clamp(min=1), n


def _batch_mean(per_image: Any, n: Any, min_pixels: int = _MIN_PIXELS) -> Any:
    """Mean over images with at least ``min_pixels`` valid pixels (0 with a graph when none)."""
    ok = (n >= min_pixels).to(per_image.dtype)
    return (per_image * ok).sum() / ok.sum().clamp(min=1)


def _masked_median(x: Any, valid: Any) -> Any:
    """Per-image median over valid pixels, (N,); 0 for an image with none."""
    import torch

    flat = torch.where(valid, x, torch.full_like(x, float("nan"))).flatten(1)
    med = torch.nanmedian(flat, dim=1).values
    return torch.nan_to_num(med, nan=0.0)


# ----------------------------------------------------------------------------------- alignment


@dataclass
class Alignment:
    """Per-image map ``scale * pred + shift`` (the prediction's own median / mean absolute
    deviation normalisation, scale > 0) next to the normalised target."""

    aligned: Any  # N x H x W normalised prediction, comparable with the normalised target
    target: Any  # N x H x W normalised target
    valid: Any  # N x H x W bool
    scale: Any  # (N,)
    shift: Any  # (N,)
    target_median: Any  # (N,): normalised = (target - median) / spread
    target_spread: Any  # (N,)
    count: Any  # (N,) valid pixels


def normalize_target(target: Any, valid: Any, eps: float = 1e-6) -> tuple[Any, Any, Any]:
    """(target - median) / mean|target - median| per image (MiDaS' scale-and-shift normalisation);
    returns (normalised N x H x W, median (N,), spread (N,))."""
    med = _masked_median(target, valid)
    dev, _ = _masked_mean((target - med[:, None, None]).abs(), valid)
    spread = dev.clamp(min=eps)
    return (target - med[:, None, None]) / spread[:, None, None], med, spread


def align_least_squares(pred: Any, target: Any, valid: Any, eps: float = 1e-8) -> tuple[Any, Any]:
    """Closed-form per-image (scale, shift) minimising sum over valid of (scale*pred + shift - target)^2.

    Centred sums keep float32 exact enough for any affine map of the prediction; a constant
    prediction gets scale 0 and shift = mean(target).
    """
    import torch

    mean_p, _ = _masked_mean(pred, valid)
    mean_t, _ = _masked_mean(target, valid)
    w = valid.to(pred.dtype)
    pc = (pred - mean_p[:, None, None]) * w
    tc = (target - mean_t[:, None, None]) * w
    var = (pc * pc).sum(dim=(-2, -1))
    cov = (pc * tc).sum(dim=(-2, -1))
    # a prediction constant up to rounding has no usable scale (cov/var would be noise / noise)
    degenerate = var <= w.sum(dim=(-2, -1)) * (1e-5 * mean_p.abs()) ** 2 + eps * 1e-12
    scale = torch.where(degenerate, torch.zeros_like(var), cov / var.clamp(min=1e-30))
    shift = mean_t - scale * mean_p
    return scale, shift


def align_prediction(pred: Any, target: Any, mask: Any | None = None) -> Alignment:
    """Align relative (inverse-depth) ``pred`` with ``target`` per image as MiDaS and Depth Anything
    do: each is normalised by its own median and mean absolute deviation over the valid pixels.
    Any ``a * pred + b`` with ``a > 0`` gives the same ``aligned``; a negated prediction does not
    (a least-squares fit would flip its sign and hide that it is upside down)."""
    pred, target, valid = _prepare(pred, target, mask, positive_target=False)
    t_norm, med, spread = normalize_target(target, valid)
    aligned, p_med, p_spread = normalize_target(pred, valid)
    scale = 1.0 / p_spread
    return Alignment(aligned, t_norm, valid, scale, -p_med * scale, med, spread, valid.sum(dim=(-2, -1)))


def _trimmed_mean(x: Any, valid: Any, trim: float) -> tuple[Any, Any]:
    """Per-image mean of ``x`` over ``valid`` without its largest ``trim`` share (N,), and the
    per-image valid counts (N,)."""
    import torch

    n = valid.sum(dim=(-2, -1))
    flat = torch.where(valid, x, torch.full_like(x, float("inf"))).flatten(1)
    ordered, _ = torch.sort(flat, dim=1)  # invalid (inf) last
    keep_n = torch.floor((1.0 - trim) * n.to(x.dtype)).clamp(min=1)
    keep = torch.arange(flat.shape[1], device=x.device)[None, :] < keep_n[:, None]
    kept = torch.where(keep & torch.isfinite(ordered), ordered, torch.zeros_like(ordered))
    return kept.sum(dim=1) / keep_n, n


# --------------------------------------------------------------------------------------- losses


def silog_loss(pred_depth: Any, target_depth: Any, mask: Any | None = None, lam: float = 0.85) -> Any:
    """Scale-invariant log loss ``mean(g^2) - lam * mean(g)^2``, ``g = log pred - log target``
    (metric depth, both > 0 where valid). ``lam = 1``: invariant to a global scale of ``pred``;
    ``lam = 0``: plain mean squared log error."""
    import torch

    if not 0.0 <= lam <= 1.0:
        raise LossInputError(f"SILog lambda must be in [0, 1], got {lam}")
    pred, target, valid = _prepare(pred_depth, target_depth, mask, positive_target=True,
                                   positive_pred=True)
    g = torch.log(pred) - torch.log(target)
    m1, n = _masked_mean(g, valid)
    m2, _ = _masked_mean(g * g, valid)
    per_image = (m2 - lam * m1 * m1).clamp(min=0.0)
    return _batch_mean(per_image, n, 1)


def ssi_loss(pred: Any, target: Any, mask: Any | None = None, alignment: Alignment | None = None,
             trim: float = SSI_TRIM) -> Any:
    """Scale-and-shift-invariant loss: mean |aligned - normalised target| per image over the
    pixels left after dropping the largest ``trim`` share of residuals (MiDaS' trimmed SSI MAE),
    for relative inverse-depth ``pred`` against inverse-depth ``target``."""
    if not 0.0 <= trim < 1.0:
        raise LossInputError(f"trim must be in [0, 1), got {trim}")
    a = alignment or align_prediction(pred, target, mask)
    per_image, _ = _trimmed_mean((a.aligned - a.target).abs(), a.valid, trim)
    return _batch_mean(per_image, a.count)


def gradient_matching_loss(residual: Any, valid: Any, scales: int = 4) -> Any:
    """Multi-scale gradient matching: sum over scales k of mean |d/dx R_k| + |d/dy R_k| where
    ``R_k`` is the residual (prediction - target) subsampled by 2^k and both neighbours are valid."""
    import torch

    residual = _as_nhw(residual, "residual")
    valid = _as_nhw(valid, "valid").bool()
    total = torch.zeros((), dtype=residual.dtype, device=residual.device)
    zero = torch.zeros((), dtype=residual.dtype, device=residual.device)
    for k in range(max(1, int(scales))):
        step = 2 ** k
        r = torch.where(valid, residual, zero)[:, ::step, ::step]
        v = valid[:, ::step, ::step]
        if r.shape[-1] < 2 or r.shape[-2] < 2:
            break
        vx = (v[:, :, 1:] & v[:, :, :-1]).to(r.dtype)
        vy = (v[:, 1:, :] & v[:, :-1, :]).to(r.dtype)
        gx = (r[:, :, 1:] - r[:, :, :-1]).abs() * vx
        gy = (r[:, 1:, :] - r[:, :-1, :]).abs() * vy
        n = vx.sum(dim=(-2, -1)) + vy.sum(dim=(-2, -1))
        per_image = (gx.sum(dim=(-2, -1)) + gy.sum(dim=(-2, -1))) / n.clamp(min=1)
        total = total + _batch_mean(per_image, n, 1)
    return total


def _batch_K(K: Any, n: int, like: Any) -> Any:
    import torch

    K = torch.as_tensor(K, dtype=like.dtype, device=like.device)
    if K.shape == (3, 3):
        K = K.expand(n, 3, 3)
    if K.ndim != 3 or K.shape[1:] != (3, 3) or K.shape[0] != n:
        raise LossInputError(f"K must be 3x3 or N x 3 x 3 with N = {n}, got {tuple(K.shape)}")
    return K


def normals_from_depth(depth_m: Any, K: Any, valid: Any | None = None) -> tuple[Any, Any]:
    """Unit surface normals (N x 3 x (H-1) x (W-1), camera frame) from depth and intrinsics, by the
    cross product of the forward differences of the back-projected points; and where they are valid
    (the pixel and its right and lower neighbours all valid)."""
    import torch

    z = _as_nhw(depth_m, "depth")
    n, h, w = z.shape
    K = _batch_K(K, n, z)
    if valid is None:
        valid = torch.isfinite(z) & (z > 0)
    z = torch.where(valid, z, torch.ones_like(z))
    v, u = torch.meshgrid(torch.arange(h, dtype=z.dtype, device=z.device),
                          torch.arange(w, dtype=z.dtype, device=z.device), indexing="ij")
    fx, fy = K[:, 0, 0, None, None], K[:, 1, 1, None, None]
    cx, cy = K[:, 0, 2, None, None], K[:, 1, 2, None, None]
    pts = torch.stack([(u - cx) / fx * z, (v - cy) / fy * z, z], dim=1)  # N x 3 x H x W
    du = pts[:, :, :-1, 1:] - pts[:, :, :-1, :-1]
    dv = pts[:, :, 1:, :-1] - pts[:, :, :-1, :-1]
    normal = torch.cross(du, dv, dim=1)
    normal = normal / normal.norm(dim=1, keepdim=True).clamp(min=1e-12)
    ok = valid[:, :-1, :-1] & valid[:, :-1, 1:] & valid[:, 1:, :-1]
    return normal, ok


def normal_loss(pred_depth: Any, target_depth: Any, K: Any, mask: Any | None = None) -> Any:
    """Mean (1 - cos angle) between the normals of ``pred_depth`` and ``target_depth`` (both depth
    along z; any common scale cancels) where both are valid."""
    pred, target, valid = _prepare(pred_depth, target_depth, mask, positive_target=True,
                                   positive_pred=True)
    n_pred, ok = normals_from_depth(pred, K, valid)
    n_gt, _ = normals_from_depth(target.detach(), K, valid)
    cos = (n_pred * n_gt).sum(dim=1)
    per_image, count = _masked_mean(1.0 - cos, ok)
    return _batch_mean(per_image, count, 1)


# ---------------------------------------------------------------------------------------- total


@dataclass(frozen=True)
class LossConfig:
    """``mode="ssi"``: the prediction is relative inverse depth, the loss is SSI + gradient matching
    on the aligned residual (+ normals of the aligned depth when the target is depth and K is known).
    ``mode="silog"``: the prediction is metric depth, the loss is SILog + gradient matching of the
    log-depth residual (+ normals)."""

    mode: LossMode = "ssi"
    alpha: float = 0.5  # weight of the gradient-matching term
    beta: float = 0.0  # weight of the surface-normal term (needs depth targets and K)
    silog_lambda: float = 0.85
    trim: float = SSI_TRIM  # share of the largest SSI residuals left out per image
    scales: int = 4
    min_inverse_depth: float = 1e-3  # 1/m: aligned inverse depth is clamped here before inverting

    def __post_init__(self) -> None:
        if self.mode not in ("ssi", "silog"):
            raise ValueError(f"loss mode must be 'ssi' or 'silog', got {self.mode!r}")
        if self.alpha < 0 or self.beta < 0:
            raise ValueError(f"loss weights must be >= 0, got alpha={self.alpha}, beta={self.beta}")
        if not 0.0 <= self.trim < 1.0:
            raise ValueError(f"loss trim must be in [0, 1), got {self.trim}")


@dataclass
class LossTerms:
    """The total and its parts (0-d tensors; ``total`` carries the graph)."""

    total: Any
    si: Any
    grad: Any
    normal: Any

    def as_floats(self) -> dict[str, float]:
        return {k: float(getattr(self, k).detach()) for k in ("total", "si", "grad", "normal")}


def depth_loss(pred: Any, target: Any, mask: Any | None = None, K: Any | None = None,
               config: LossConfig = LossConfig(), target_kind: TargetKind = "depth") -> LossTerms:
    """``L = L_si + alpha * L_grad + beta * L_normal``.

    ``target_kind``: ``"depth"`` (metres, or any depth up to scale; NaN/<= 0 invalid) or
    ``"inverse"`` (inverse depth, possibly only up to an affine map: a relative teacher's
    pseudo-labels; NaN invalid). The normal term needs depth targets and ``K``.
    """
    import torch

    if target_kind not in ("depth", "inverse"):
        raise LossInputError(f"target_kind must be 'depth' or 'inverse', got {target_kind!r}")
    if config.beta > 0 and (K is None or target_kind != "depth"):
        raise LossInputError("the surface-normal term (beta > 0) needs depth targets and K")
    pred = _as_nhw(pred, "prediction")
    zero = torch.zeros((), dtype=pred.dtype, device=pred.device)
    if config.mode == "silog":
        if target_kind != "depth":
            raise LossInputError("SILog compares metric depth: give depth targets")
        si = silog_loss(pred, target, mask, config.silog_lambda)
        p, t, valid = _prepare(pred, target, mask, positive_target=True, positive_pred=True)
        grad = gradient_matching_loss(torch.log(p) - torch.log(t), valid, config.scales) \
            if config.alpha > 0 else zero
        normal = normal_loss(p, t, K, valid) if config.beta > 0 else zero
    else:
        tgt = _as_nhw(target, "target")
        if target_kind == "depth":
            ok = torch.isfinite(tgt) & (tgt > 0)
            tgt = torch.where(ok, 1.0 / torch.where(ok, tgt, torch.ones_like(tgt)),
                              torch.full_like(tgt, float("nan")))
        a = align_prediction(pred, tgt, mask)
        si = ssi_loss(pred, tgt, alignment=a, trim=config.trim)
        grad = gradient_matching_loss(a.aligned - a.target, a.valid, config.scales) \
            if config.alpha > 0 else zero
        if config.beta > 0:
            # back to inverse depth in the target's units, then to depth
            inv = a.aligned * a.target_spread[:, None, None] + a.target_median[:, None, None]
            inv = inv.clamp(min=config.min_inverse_depth)
            inv_t = a.target * a.target_spread[:, None, None] + a.target_median[:, None, None]
            normal = normal_loss(1.0 / inv, 1.0 / inv_t.clamp(min=config.min_inverse_depth), K, a.valid)
        else:
            normal = zero
    total = si + config.alpha * grad + config.beta * normal
    return LossTerms(total, si, grad, normal)


__all__ = [
    "Alignment", "LossConfig", "LossInputError", "LossTerms", "align_least_squares", "align_prediction",
    "depth_loss", "gradient_matching_loss", "normal_loss", "normalize_target", "normals_from_depth",
    "silog_loss", "ssi_loss",
]
