"""Pre- and post-processing shared by every backend, in two implementations with the same output:
torch ops (:func:`preprocess`; on a GPU they run on the device) and numpy/OpenCV/Pillow
(:func:`preprocess_numpy`), which the ONNX Runtime path uses so that it never imports torch
(``import torch`` alone costs ~0.5 GB of resident memory). :func:`postprocess` takes either.

Pre: HxWx3 uint8 RGB → 1x3xh×w float32 normalised network input. The aspect ratio is kept: either
the shorter side goes to ``input_size`` and both sides are rounded to the patch multiple
(``short_side``, the Depth Anything convention), or the image is scaled to fit a fixed square and
centred on a zero (= mean colour) border (``fixed``: letterbox, never squashed).

Post: 1xh×w network output → HxW float32 at the input resolution (border cropped, bilinear resize).

On a CUDA device, :class:`ImageUploader` stages frames through pinned memory on an upload stream of
its own, so that the next frame's copy overlaps this frame's work (``DepthEstimator.upload``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from .zoo import ModelSpec


@dataclass(frozen=True)
class Geometry:
    """Where the image sits in the network input (pixels)."""

    image_hw: tuple[int, int]  # input image H, W
    net_hw: tuple[int, int]  # network input h, w
    content_hw: tuple[int, int]  # resized image inside the network input
    offset_yx: tuple[int, int]  # top-left corner of the content (letterbox border)

    @property
    def scale(self) -> float:
        """Network pixels per image pixel along x (uniform for letterbox, ~uniform otherwise)."""
        return self.content_hw[1] / self.image_hw[1]


#: longest / shortest image side the short-side layout accepts by default: the network input grows
#: with it (a 1xN image would become size x size·N) and attention with its square
MAX_ASPECT_RATIO = 4.0


def network_geometry(height: int, width: int, spec: ModelSpec, input_size: int | None = None,
                     max_aspect_ratio: float = MAX_ASPECT_RATIO) -> Geometry:
    """Network input layout for an image of ``height`` x ``width`` pixels. Refuses, before anything
    is allocated, an image whose sides differ by more than ``max_aspect_ratio`` where the network
    input would grow with it (short-side layout; a fixed letterbox never grows)."""
    if height < 1 or width < 1:
        raise ValueError(f"image must be at least 1x1 pixels, got {width}x{height}")
    aspect = max(height, width) / min(height, width)
    if spec.resize_mode != "fixed" and aspect > max_aspect_ratio:
        raise ValueError(f"image {width}x{height} has an aspect ratio of {aspect:.1f}, more than "
                         f"max_aspect_ratio {max_aspect_ratio:g} allows for {spec.name}'s input")
    size = int(input_size or spec.input_size)
    m = max(1, spec.patch_multiple)
    if size < m:
        raise ValueError(f"input size {size} is smaller than {spec.name}'s patch multiple {m}")
    if spec.resize_mode == "fixed":
        s = size / max(height, width)
        ch, cw = max(1, round(height * s)), max(1, round(width * s))
        return Geometry((height, width), (size, size), (ch, cw), ((size - ch) // 2, (size - cw) // 2))
    if size % m:
        raise ValueError(f"input size {size} must be a multiple of {m} for {spec.name}")
    s = size / min(height, width)
    nh = max(m, int(round(height * s / m)) * m)
    nw = max(m, int(round(width * s / m)) * m)
    return Geometry((height, width), (nh, nw), (nh, nw), (0, 0))


def check_rgb(rgb: Any) -> None:
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"image must be an HxWx3 RGB array, got {getattr(rgb, 'shape', type(rgb).__name__)}")
    if rgb.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {rgb.dtype}")


def preprocess(rgb: Any, spec: ModelSpec, input_size: int | None = None, device: Any = "cpu",
               dtype: Any = None, max_aspect_ratio: float = MAX_ASPECT_RATIO) -> tuple[Any, Geometry]:
    """HxWx3 uint8 RGB (numpy, or a torch tensor already on ``device``: :meth:`ImageUploader.take`)
    → (1x3xh×w normalised torch tensor on ``device``, geometry)."""
    import torch
    import torch.nn.functional as F

    if isinstance(rgb, torch.Tensor):
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != torch.uint8:
            raise ValueError(f"image must be an HxWx3 uint8 tensor, got {tuple(rgb.shape)} {rgb.dtype}")
        x = rgb.to(device)
    else:
        check_rgb(rgb)
        x = torch.from_numpy(np.ascontiguousarray(rgb)).to(device)
    geo = network_geometry(x.shape[0], x.shape[1], spec, input_size, max_aspect_ratio)
    x = x.permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
    if geo.content_hw != geo.image_hw:
        # antialias only matters (and only costs) when shrinking
        shrink = geo.content_hw[0] < geo.image_hw[0]
        x = F.interpolate(x, size=geo.content_hw, mode="bicubic", align_corners=False,
                          antialias=shrink).clamp_(0.0, 1.0)
    mean = torch.tensor(spec.mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, device=x.device).view(1, 3, 1, 1)
    x = (x - mean) / std
    if geo.net_hw != geo.content_hw:
        (top, left), (ch, cw) = geo.offset_yx, geo.content_hw
        x = F.pad(x, (left, geo.net_hw[1] - cw - left, top, geo.net_hw[0] - ch - top))
    if dtype is not None:
        x = x.to(dtype)
    return x.contiguous(), geo


@dataclass(frozen=True)
class UploadedImage:
    """An HxWx3 uint8 image queued for the device by :meth:`ImageUploader.upload`; give it to
    :meth:`ImageUploader.take` (``DepthEstimator.predict`` does) before the uploader's slots wrap."""

    slot: int
    generation: int
    shape: tuple[int, int, int]


class ImageUploader:
    """HxWx3 uint8 host images → device tensors through pinned staging buffers and an upload stream
    of their own, so that frame N+1's copy runs while frame N is still being computed (CUDA only).

        staged = uploader.upload(rgb_next)     # returns at once; the copy is queued
        ...                                     # frame N's work on the current stream
        x = uploader.take(staged)               # HxWx3 uint8 on the device, ordered after its copy
        ...preprocess(x)...; uploader.release(staged)

    ``slots`` images may be staged and not yet taken; one more overwrites the oldest (``take`` then
    raises). Host side: ``upload`` copies the image into the slot's pinned buffer, first waiting for
    that buffer's previous copy to the device to finish. Device side: a slot's copy waits until the
    frame that last used its device buffer has been released (read by the current stream). Use from
    one thread (the one that calls ``predict``).
    """

    def __init__(self, device: Any, slots: int = 2) -> None:
        import torch

        self._torch = torch
        self.device = torch.device(device)
        if self.device.type != "cuda":
            raise ValueError(f"the pinned upload path is for CUDA devices, got {self.device}")
        if slots < 1:
            raise ValueError(f"slots must be >= 1, got {slots}")
        self._stream = torch.cuda.Stream(device=self.device)
        self._count = int(slots)
        self._shape: tuple[int, int, int] | None = None
        self._host: list[Any] = []  # pinned HxWx3 uint8 CPU tensors
        self._dev: list[Any] = []  # HxWx3 uint8 device tensors
        self._copied: list[Any] = []  # per slot: recorded on the upload stream after its copy
        self._released: list[Any] = []  # per slot: recorded on the consumer's stream after use
        self._generation = [0] * self._count
        self._uploads = 0

    def _allocate(self, shape: tuple[int, int, int]) -> None:
        torch = self._torch
        torch.cuda.synchronize(self.device)  # queued copies may still use the old buffers
        self._host = [torch.empty(shape, dtype=torch.uint8, pin_memory=True)
                      for _ in range(self._count)]
        self._dev = [torch.empty(shape, dtype=torch.uint8, device=self.device)
                     for _ in range(self._count)]
        self._copied = [torch.cuda.Event() for _ in range(self._count)]
        self._released = [torch.cuda.Event() for _ in range(self._count)]
        self._shape = shape

    def upload(self, rgb: np.ndarray) -> UploadedImage:
        """Queue the copy of ``rgb`` (HxWx3 uint8) to the device; returns once the image is in the
        pinned buffer (the caller may then reuse ``rgb``)."""
        torch = self._torch
        check_rgb(rgb)
        shape = (int(rgb.shape[0]), int(rgb.shape[1]), 3)
        if shape != self._shape:
            self._allocate(shape)
        i = self._uploads % self._count
        self._uploads += 1
        self._generation[i] = self._uploads
        self._copied[i].synchronize()  # the pinned buffer's previous copy has left it
        np.copyto(self._host[i].numpy(), rgb)
        self._stream.wait_event(self._released[i])  # the device buffer's last frame has been read
        with torch.cuda.stream(self._stream):
            self._dev[i].copy_(self._host[i], non_blocking=True)
            self._copied[i].record(self._stream)
        return UploadedImage(i, self._uploads, shape)

    def take(self, staged: UploadedImage) -> Any:
        """The staged image as an HxWx3 uint8 device tensor; the current stream waits for its copy
        (no host synchronisation). Call :meth:`release` once the work reading it is queued."""
        torch = self._torch
        if staged.shape != self._shape or self._generation[staged.slot] != staged.generation:
            raise ValueError(f"the uploaded image was overwritten: at most {self._count} images "
                             "may be uploaded and not yet predicted")
        torch.cuda.current_stream(self.device).wait_event(self._copied[staged.slot])
        return self._dev[staged.slot]

    def release(self, staged: UploadedImage) -> None:
        """The work that reads ``staged`` is queued on the current stream: its slot's next copy
        will wait for it."""
        self._released[staged.slot].record(self._torch.cuda.current_stream(self.device))


def _resize_bicubic(img: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """HxWxC (C <= 4) uint8 or float32 → hxwxC float32 (same value scale), the torch path's
    bicubic: antialiased when shrinking (torch's antialias filter is Pillow's:
    :func:`_antialias_weights`), OpenCV's bicubic (the same a = -0.75 kernel and half-pixel centres
    as torch) when enlarging."""
    import cv2

    h, w = hw
    if h < img.shape[0]:
        # separable, columns first as Pillow: each pass one sparse product over the rows of a
        # transposed image (cv2.transpose moves whole pixels: far cheaper than a numpy transpose
        # of the interleaved channels)
        H, W, C = img.shape
        t = cv2.transpose(np.ascontiguousarray(img)).reshape(W, H * C)
        cols = (_antialias_weights(W, w) @ t).astype(np.float32, copy=False)  # w x (H*C)
        t = cv2.transpose(cols.reshape(w, H, C)).reshape(H, w * C)
        rows = _antialias_weights(H, h) @ t  # h x (w*C)
        return rows.reshape(h, w, C).astype(np.float32, copy=False)
    return cv2.resize(np.asarray(img, np.float32), (w, h), interpolation=cv2.INTER_CUBIC)


@lru_cache(maxsize=8)
def _antialias_weights(n_in: int, n_out: int) -> Any:
    """The n_out x n_in sparse matrix (float32 CSR, read only: cached per size, a camera's frames
    share it) of Pillow's antialiased bicubic resampling along one axis (Pillow's
    ``precompute_coeffs`` with its a = -0.5 kernel stretched by the scale, normalised per output
    sample), which torch's ``antialias=True`` bicubic also uses."""
    from scipy.sparse import csr_matrix

    scale = n_in / n_out
    filter_scale = max(scale, 1.0)
    support = 2.0 * filter_scale
    center = (np.arange(n_out) + 0.5) * scale
    lo = np.maximum((center - support + 0.5).astype(np.int64), 0)  # C truncation, then clamped
    hi = np.minimum((center + support + 0.5).astype(np.int64), n_in)
    taps = int((hi - lo).max())
    idx = lo[:, None] + np.arange(taps)[None, :]
    x = np.abs((idx - center[:, None] + 0.5) / filter_scale)
    a = -0.5
    k = np.where(x < 1.0, ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0,
                 np.where(x < 2.0, (((x - 5.0) * x + 8.0) * x - 4.0) * a, 0.0))
    k[idx >= hi[:, None]] = 0.0
    k /= k.sum(axis=1, keepdims=True)
    keep = idx < hi[:, None]
    rows = np.broadcast_to(np.arange(n_out)[:, None], idx.shape)
    return csr_matrix((k[keep].astype(np.float32), (rows[keep], idx[keep])), shape=(n_out, n_in))


def preprocess_numpy(rgb: np.ndarray, spec: ModelSpec, input_size: int | None = None,
                     max_aspect_ratio: float = MAX_ASPECT_RATIO) -> tuple[np.ndarray, Geometry]:
    """HxWx3 uint8 RGB → (1x3xh×w normalised float32 numpy array, geometry): :func:`preprocess`
    without torch (same resize, normalisation and letterbox; equal within ~1e-5 after
    normalisation)."""
    check_rgb(rgb)
    geo = network_geometry(rgb.shape[0], rgb.shape[1], spec, input_size, max_aspect_ratio)
    if geo.content_hw != geo.image_hw:
        # resampled in grey levels (linear: the same as resampling x / 255), from the uint8 image
        x = np.clip(_resize_bicubic(rgb, geo.content_hw), 0.0, 255.0)
    else:
        x = rgb.astype(np.float32)
    # x / 255, then (x - mean) / std: one multiply-add per channel, into the network's layout
    std = np.asarray(spec.std, np.float32)
    scale = (np.float32(1.0 / 255.0) / std)[:, None, None]
    offset = (-np.asarray(spec.mean, np.float32) / std)[:, None, None]
    out = np.zeros((1, 3, *geo.net_hw), np.float32)  # zero border = the mean colour
    (top, left), (ch, cw) = geo.offset_yx, geo.content_hw
    content = out[0, :, top:top + ch, left:left + cw]
    np.multiply(x.transpose(2, 0, 1), scale, out=content)
    content += offset
    return out, geo


def postprocess(pred: Any, geo: Geometry) -> np.ndarray:
    """Network output (1xh×w or h×w, torch or numpy) → HxW float32 numpy at the input resolution.
    A numpy prediction is resized with OpenCV (bilinear, half-pixel centres: torch's
    ``align_corners=False``), so the ONNX Runtime path needs no torch."""
    if isinstance(pred, np.ndarray):
        return _postprocess_numpy(pred, geo)
    return postprocess_tensor(pred, geo).cpu().numpy().astype(np.float32, copy=False)


def postprocess_tensor(pred: Any, geo: Geometry) -> Any:
    """Network output (1xh×w or h×w torch tensor) → HxW float32 torch tensor at the input
    resolution, on the prediction's device (what :func:`postprocess` copies back)."""
    import torch
    import torch.nn.functional as F

    t = torch.as_tensor(pred).float()
    if t.ndim == 2:
        t = t.unsqueeze(0)
    if t.ndim != 3 or t.shape[0] != 1:
        raise ValueError(f"expected a 1xHxW prediction, got {tuple(t.shape)}")
    if tuple(t.shape[1:]) != geo.net_hw:
        # a head that returns another size (never for the zoo's models, but cheap to honour)
        t = F.interpolate(t.unsqueeze(0), size=geo.net_hw, mode="bilinear", align_corners=False)[0]
    (top, left), (ch, cw) = geo.offset_yx, geo.content_hw
    t = t[:, top:top + ch, left:left + cw]
    if geo.content_hw != geo.image_hw:
        t = F.interpolate(t.unsqueeze(0), size=geo.image_hw, mode="bilinear", align_corners=False)[0]
    return t[0]


def _postprocess_numpy(pred: np.ndarray, geo: Geometry) -> np.ndarray:
    import cv2

    d = np.asarray(pred, dtype=np.float32)
    if d.ndim == 3:
        if d.shape[0] != 1:
            raise ValueError(f"expected a 1xHxW prediction, got {d.shape}")
        d = d[0]
    if d.ndim != 2:
        raise ValueError(f"expected a 1xHxW prediction, got {d.shape}")
    if d.shape != geo.net_hw:
        d = cv2.resize(d, geo.net_hw[::-1], interpolation=cv2.INTER_LINEAR)
    (top, left), (ch, cw) = geo.offset_yx, geo.content_hw
    d = d[top:top + ch, left:left + cw]
    if geo.content_hw != geo.image_hw:
        d = cv2.resize(np.ascontiguousarray(d), geo.image_hw[::-1], interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(d, dtype=np.float32)


#: longest side of the prompt depth given to Prompt Depth Anything: the 256x192 LiDAR depth of the
#: phones it was trained with; larger prompts are pooled down to it, so every prompt fits the
#: TensorRT profile (:func:`~depth_perception.depth.engine_profiles.prompt_depth_profile`)
PROMPT_MAX_SIDE = 256


def prompt_from_depth(depth_m: np.ndarray, max_side: int = PROMPT_MAX_SIDE) -> np.ndarray:
    """HxW metric depth (NaN/<= 0 invalid: a registered depth image, or sparse LiDAR samples) →
    hxw float32 dense prompt depth for Prompt Depth Anything, h, w <= ``max_side``.

    Blocks of k x k pixels (k the smallest factor that brings the longer side to ``max_side``)
    become the median of their valid samples, then every empty cell takes its nearest valid
    cell's depth: the network min/max-normalises the prompt, so a hole must not become 0 (or any
    value the sensor did not measure nearby). ValueError without a single valid sample.
    """
    from scipy import ndimage

    d = np.asarray(depth_m, dtype=np.float32)
    if d.ndim != 2 or min(d.shape) < 2:
        raise ValueError(f"prompt depth must be an hxw array (h, w >= 2), got shape {d.shape}")
    if max_side < 2:
        raise ValueError(f"max_side must be >= 2, got {max_side}")
    with np.errstate(invalid="ignore"):
        d = np.where(np.isfinite(d) & (d > 0), d, np.float32(np.nan))
    k = -(-max(d.shape) // max_side)
    if k > 1:
        h, w = -(-d.shape[0] // k), -(-d.shape[1] // k)
        padded = np.full((h * k, w * k), np.nan, np.float32)
        padded[:d.shape[0], :d.shape[1]] = d
        blocks = padded.reshape(h, k, w, k).transpose(0, 2, 1, 3).reshape(h, w, k * k)
        # empty blocks stay NaN; sorting puts NaN last, so the median of the valid part is direct
        blocks = np.sort(blocks, axis=2)
        count = np.isfinite(blocks).sum(axis=2)
        lo = np.take_along_axis(blocks, np.maximum(count - 1, 0)[..., None] // 2, axis=2)[..., 0]
        hi = np.take_along_axis(blocks, (count // 2)[..., None], axis=2)[..., 0]
        d = np.where(count > 0, 0.5 * (lo + hi), np.nan).astype(np.float32)
    holes = ~np.isfinite(d)
    if holes.all():
        raise ValueError("prompt depth has no valid (finite, > 0) pixels")
    if holes.any():
        idx = ndimage.distance_transform_edt(holes, return_distances=False, return_indices=True)
        d = d[idx[0], idx[1]]
    return np.ascontiguousarray(d, dtype=np.float32)


def depth_pro_inverse_depth(canonical_inverse: Any, geo: Geometry, fx_px: float | None = None,
                            fov_deg: float | None = None) -> Any:
    """Depth Pro's canonical inverse depth (network frame) → inverse depth in 1/metres.

    Depth Pro predicts ``f_net / (w_net * Z)``. With the image's focal length ``fx_px`` (from K) the
    network-frame focal is ``fx_px * scale``; without it, the field of view the model estimated over
    its input width gives it. Resize the result, then invert (as transformers does). Host arrays
    (numpy or CPU torch) in, float32 numpy out.
    """

    w_net = geo.net_hw[1]
    if fx_px is not None:
        if not fx_px > 0:
            raise ValueError(f"focal length must be > 0 pixels, got {fx_px}")
        f_net = fx_px * geo.scale
    elif fov_deg is not None:
        f_net = 0.5 * w_net / np.tan(0.5 * np.deg2rad(float(fov_deg)))
    else:
        raise ValueError("Depth Pro needs the focal length (fx from K) or its field-of-view output")
    return np.asarray(canonical_inverse, dtype=np.float32) * np.float32(w_net / f_net)
