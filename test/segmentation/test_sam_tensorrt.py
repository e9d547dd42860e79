"""SAM on TensorRT: the two engines' specs, keys and shape profiles, their check against ONNX
Runtime, the segmenter's own logic (over stand-in engines that run ONNX Runtime), the parameter
wiring of every SAM backend, and (marked ``gpu``) real engines built from the tiny SAM export."""

from __future__ import annotations

import logging
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("segment_anything")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from depth_perception import config  # noqa: E402
from depth_perception.depth import engine_cache as ec  # noqa: E402
from depth_perception.depth import tensorrt_backend as tb  # noqa: E402
from depth_perception.segmentation import sam_tensorrt as st  # noqa: E402
from depth_perception.segmentation.base import Detection, SegmentationError  # noqa: E402
from depth_perception.segmentation.sam import SamSegmenter, SamWeightsError  # noqa: E402
from depth_perception.segmentation.sam_onnx import SamExportError, SamOnnxSegmenter  # noqa: E402

TRT = dict(tensorrt_version="10.13.0.35", gpu_name="NVIDIA H100 80GB HBM3", compute_capability=(9, 0))
# (rows, cols) crops of a real photo: 4:3 landscape, 16:9 landscape, 9:16 portrait
ASPECTS = {"4:3": (slice(0, 240), slice(0, 320)), "16:9": (slice(100, 280), slice(50, 370)),
           "portrait": (slice(50, 370), slice(200, 380))}


@pytest.fixture(scope="module")
def photo():
    return pytest.importorskip("skimage.data").astronaut()  # 512x512 RGB


def crop(photo, aspect):
    rows, cols = ASPECTS[aspect]
    return np.ascontiguousarray(photo[rows, cols])


@pytest.fixture(scope="module")
def tiny_sam():
    return SamSegmenter.from_config("tiny")


@pytest.fixture(scope="module")
def checkpoint(tiny_sam, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "sam_tiny.pth"
    torch.save(tiny_sam.model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("engines")


@pytest.fixture(scope="module")
def exported(checkpoint, cache):
    """The tiny SAM's checkpoint exported into the engine cache, as the node does on first use."""
    return st.cached_sam_onnx("tiny", checkpoint, cache_dir=cache)


@pytest.fixture(scope="module")
def ort_sam(exported):
    return SamOnnxSegmenter(exported.encoder, exported.decoder, providers=["CPUExecutionProvider"])


def _no_real_tensorrt():
    if tb.tensorrt_available():
        pytest.skip("a real TensorRT is installed here")


# --------------------------------------------------------------------------------------------------
# Without a GPU


def test_module_imports_nothing_heavy():
    code = ("import sys; before = set(sys.modules); "
            "import depth_perception.segmentation.sam_tensorrt; "
            "print(sorted({m.split('.')[0] for m in set(sys.modules) - before} & "
            "{'torch', 'tensorrt', 'onnxruntime', 'onnx', 'cv2', 'segment_anything'}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_export_lands_in_the_cache_once(exported, checkpoint, cache):
    folder = exported.encoder.parent
    assert folder.parent == cache / "sam_onnx"
    assert folder.name == f"tiny-{ec.sha256_file(checkpoint)[:16]}"
    stamps = [p.stat().st_mtime_ns for p in (exported.encoder, exported.decoder)]
    lines = []
    again = st.cached_sam_onnx("tiny", checkpoint, cache_dir=cache, log=lines.append)
    assert again == exported and not lines  # found, not exported again
    assert [p.stat().st_mtime_ns for p in (again.encoder, again.decoder)] == stamps
    with pytest.raises(SamWeightsError, match="not found"):
        st.cached_sam_onnx("tiny", cache / "missing.pth", cache_dir=cache)


def test_decoder_profile_shapes_and_batches():
    profile = st.DecoderProfile()
    assert profile.prompts == (1, 4, 16) and profile.points == (1, 2, 8)
    shapes = profile.tensor_profiles()
    assert shapes["point_coords"].input_shapes() == ((1, 1, 2), (4, 2, 2), (16, 8, 2))
    assert shapes["point_labels"].input_shapes() == ((1, 1), (4, 2), (16, 8))
    assert st.DecoderProfile.from_engine_shapes(shapes["point_coords"].input_shapes()) == profile
    # more prompts than the engine takes: split; fewer than its minimum: padded
    assert profile.batches(35, 2) == [(0, 16, 16), (16, 32, 16), (32, 35, 3)]
    assert st.DecoderProfile(prompts=(2, 2, 4)).batches(5, 3) == [(0, 4, 4), (4, 5, 2)]
    assert profile.batches(0, 2) == []
    with pytest.raises(SegmentationError, match=r"9 decoder points .* profile \(1..8 points\)"):
        profile.batches(1, 9)
    for bad, message in [({"prompts": (4, 2, 16)}, "min <= opt <= max"),
                         ({"points": (0, 1, 2)}, "1 <= min"), ({"points": (1, 2)}, "three ints")]:
        with pytest.raises(ValueError, match=message):
            st.DecoderProfile(**bad)


def test_engine_specs_come_from_the_graphs(exported):
    enc, dec = st.sam_engine_specs(exported.encoder, exported.decoder)
    assert (enc.precision, enc.profile, enc.input_name, enc.output_name) == (
        "fp16", ec.ShapeProfile.fixed(256, 256), "image", "image_embeddings")
    assert dec.precision == "fp32" and dec.output_name == "low_res_masks"
    assert dec.profile == ec.ShapeProfile.fixed(16, 16, batch=1, channels=32)
    assert dict(dec.extra_profiles) == st.DecoderProfile().tensor_profiles()
    with pytest.raises(ValueError, match="int8 is not supported"):
        st.sam_engine_specs(exported.encoder, exported.decoder, decoder_precision="int8")
    with pytest.raises(ValueError, match="must be one of fp32, fp16, int8"):
        st.sam_engine_specs(exported.encoder, exported.decoder, encoder_precision="bf16")
    with pytest.raises(SamExportError, match="expected inputs"):
        st.sam_engine_specs(exported.decoder, exported.encoder)
    with pytest.raises(FileNotFoundError, match="not found"):
        st.sam_engine_specs(exported.encoder.with_name("nope.onnx"), exported.decoder)


def test_engine_key_differs_per_precision_and_profile(exported):
    def keys(**kwargs):
        return [s.key(**TRT) for s in st.sam_engine_specs(exported.encoder, exported.decoder,
                                                          **kwargs)]

    enc16, dec = keys()
    assert keys() == [enc16, dec]  # stable: a second start finds the same cache entries
    enc32, dec16 = keys(encoder_precision="fp32", decoder_precision="fp16")
    _, dec_wide = keys(decoder_profile=st.DecoderProfile(prompts=(1, 8, 32)))
    _, dec_points = keys(decoder_profile=st.DecoderProfile(points=(2, 3, 12)))
    digests = {k.digest() for k in (enc16, enc32, dec, dec16, dec_wide, dec_points)}
    assert len(digests) == 6
    assert enc16.file_name("tiny_encoder").startswith("tiny_encoder.fp16.256x256.")
    assert dec.file_name("tiny_decoder").startswith("tiny_decoder.fp32.16x16.")
    assert dec.file_name("tiny_decoder") != dec_wide.file_name("tiny_decoder")  # the digest part
    assert dec.fields()["extra_profiles"]["point_coords"] == {
        "min_shape": [1, 1, 2], "opt_shape": [4, 2, 2], "max_shape": [16, 8, 2]}


def test_every_decoder_input_gets_its_profile(exported):
    graph = st.onnx_input_shapes(exported.decoder)
    assert graph == {"image_embeddings": (1, 32, 16, 16), "point_coords": (-1, -1, 2),
                     "point_labels": (-1, -1)}
    _, dec = st.sam_engine_specs(exported.encoder, exported.decoder)
    profiles = tb.input_profiles(graph, "image_embeddings", dec.profile, dict(dec.extra_profiles))
    assert profiles == {"image_embeddings": dec.profile, **dict(dec.extra_profiles)}
    with pytest.raises(ValueError, match="further dynamic input 'point_coords'"):
        tb.input_profiles(graph, "image_embeddings", dec.profile)
    wrong_rank = {"point_coords": ec.TensorProfile.fixed((4, 2)),
                  "point_labels": ec.TensorProfile.fixed((4, 2))}
    with pytest.raises(ValueError, match="'point_coords' has shape -1x-1x2 .* rank 2"):
        tb.input_profiles(graph, "image_embeddings", dec.profile, wrong_rank)
    wrong_axis = {**dict(dec.extra_profiles), "point_coords": ec.TensorProfile.fixed((4, 2, 3))}
    with pytest.raises(ValueError, match="fixed size of 2 on axis 2"):
        tb.input_profiles(graph, "image_embeddings", dec.profile, wrong_axis)


def test_decoder_validation_covers_the_profile_and_catches_a_wrong_engine(exported):
    """The engine check of the decoder, with ONNX Runtime standing in for the engine: the prompts
    reach both runs alike, at the profile's opt, min and max, with every label kind."""
    profile = st.DecoderProfile(prompts=(1, 3, 6), points=(2, 3, 5))
    feeds = st.decoder_validation_feeds(profile, 256)
    assert [feeds(k)["point_labels"].shape for k in range(3)] == [(3, 3), (1, 2), (6, 5)]
    assert set(np.unique(feeds(2)["point_labels"])) == {-1.0, 0.0, 1.0, 2.0, 3.0}
    _, dec = st.sam_engine_specs(exported.encoder, exported.decoder, decoder_profile=profile)
    engine = ort.InferenceSession(str(exported.decoder), providers=["CPUExecutionProvider"])

    def check(wrong_at_max):
        extra = tb.indexed_validation_feeds(feeds)  # as the build's check: one for both runs

        def run(x):
            out = engine.run(["low_res_masks"], {"image_embeddings": x, **extra(x)})[0]
            return out * 1.3 if wrong_at_max and len(out) == 6 else out

        return ec.validate_engine(run, exported.decoder, dec.profile, "fp32",
                                  input_name="image_embeddings", output_name="low_res_masks",
                                  extra_inputs=extra)

    report = check(False)
    assert report.ok and len(report.results) == 3 and report.worst.max_abs_error < 1e-4
    with pytest.raises(ec.EngineValidationError, match="1 of 3 inputs over tolerance"):
        check(True)


class OrtEngine:
    """:class:`TensorRTBackend`'s interface (``infer_all``, ``profile_shapes``, ``close``) over ONNX
    Runtime on the CPU, refusing shapes outside its profile as an engine does: the TensorRT
    segmenter's own logic runs here; the GPU tests below run it on real engines."""

    def __init__(self, path, profiles):
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.profiles = profiles
        self.calls = []
        self.closed = False

    def profile_shapes(self, name):
        return self.profiles[name]

    def infer_all(self, feeds):
        arrays = {n: np.asarray(v, np.float32) for n, v in feeds.items()}
        for name, (lo, _, hi) in self.profiles.items():
            if not all(a <= s <= b for a, s, b in zip(lo, arrays[name].shape, hi)):
                raise ValueError(f"{name} of shape {arrays[name].shape} is outside the profile")
        self.calls.append(arrays["point_coords"].shape if "point_coords" in arrays else None)
        outs = self.session.run(None, arrays)
        return {o.name: torch.from_numpy(v) for o, v in zip(self.session.get_outputs(), outs)}

    def close(self):
        self.closed = True


@pytest.fixture
def stand_in(exported):
    """A segmenter over stand-in engines with a small decoder profile: 2..3 prompts, 2..8 points."""
    profile = st.DecoderProfile(prompts=(2, 2, 3), points=(2, 2, 8))
    enc_spec, dec_spec = st.sam_engine_specs(exported.encoder, exported.decoder,
                                             decoder_profile=profile)
    encoder = OrtEngine(exported.encoder, {"image": enc_spec.profile.input_shapes()})
    decoder = OrtEngine(exported.decoder, {n: p.input_shapes() for n, p in dec_spec.extra_profiles})
    return st.SamTensorRTSegmenter.from_backends(encoder, decoder)


@pytest.mark.parametrize("aspect", list(ASPECTS))
def test_segmenter_matches_onnxruntime_at_every_aspect(stand_in, ort_sam, photo, aspect):
    rgb = crop(photo, aspect)
    h, w = rgb.shape[:2]
    emb, ref_emb = stand_in.encode(rgb), ort_sam.encode(rgb)
    assert emb.input_size == ref_emb.input_size and emb.original_size == (h, w)
    boxes = np.array([[0.1, 0.1, 0.6, 0.5], [0.3, 0.4, 0.95, 0.9], [0.0, 0.0, 1.0, 1.0],
                      [0.5, 0.2, 0.7, 0.6], [0.2, 0.6, 0.4, 0.95]]) * [w, h, w, h]
    points = np.array([[[0.5 * w, 0.5 * h], [0.2 * w, 0.8 * h]]] * 5)
    for prompts, calls in [({"boxes_xyxy": boxes}, [(3, 2, 2), (2, 2, 2)]),  # split 3 + 2
                           ({"boxes_xyxy": boxes[:1]}, [(2, 2, 2)]),  # padded to the min of 2
                           ({"points_xy": points[:, :1]}, [(3, 2, 2), (2, 2, 2)]),  # multimask
                           ({"boxes_xyxy": boxes, "points_xy": points}, [(3, 4, 2), (2, 4, 2)])]:
        stand_in.decoder_backend.calls.clear()
        got = stand_in.decode(emb, **prompts)
        ref = ort_sam.decode(ref_emb, **prompts)
        assert stand_in.decoder_backend.calls == calls
        assert got.masks.shape == ref.masks.shape == (len(prompts["boxes_xyxy"]) if "boxes_xyxy" in
                                                      prompts else 5, h, w)
        np.testing.assert_allclose(got.logits, ref.logits, atol=1e-4)
        np.testing.assert_allclose(got.iou, ref.iou, atol=1e-5)
        assert (got.masks == ref.masks).mean() > 0.9999


def test_segmenter_labels_and_point_limits(stand_in, ort_sam, photo):
    rgb = crop(photo, "16:9")
    dets = [Detection(np.array([20.0, 20.0, 150.0, 160.0]), "a", 0.9),
            Detection(np.array([120.0, 30.0, 310.0, 170.0]), "b", 0.6),
            Detection(points_xy=np.array([[60.0, 90.0]]), label="c")]
    got, ref = stand_in.segment(rgb, dets), ort_sam.segment(rgb, dets)
    assert (got.labels == ref.labels).mean() > 0.999 and got.names == ref.names
    emb = stand_in.encode(rgb)
    many = np.tile([[[30.0, 40.0]]], (1, 7, 1))  # 7 points + 2 box corners = 9 > 8
    with pytest.raises(SegmentationError, match="9 decoder points"):
        stand_in.decode(emb, boxes_xyxy=[[10, 10, 100, 100]], points_xy=many)
    with stand_in:
        pass
    assert stand_in.encoder_backend.closed and stand_in.decoder_backend.closed


def test_construction_gives_each_engine_its_spec(exported, ort_sam, photo, monkeypatch):
    """The constructor's calls to TensorRTBackend, checked against its real signature, with ONNX
    Runtime behind them: everything but TensorRT itself."""
    import inspect

    calls = []

    def backend(onnx, **kwargs):
        inspect.signature(tb.TensorRTBackend).bind(onnx, **kwargs)  # a wrong keyword fails here
        calls.append((onnx, kwargs))
        profiles = {kwargs["input_name"]: kwargs["profile"].input_shapes(),
                    **{n: p.input_shapes() for n, p in (kwargs.get("extra_profiles") or {}).items()}}
        return OrtEngine(onnx, profiles)

    monkeypatch.setattr(st, "check_tensorrt_ready", lambda device=0: None)
    monkeypatch.setattr(tb, "TensorRTBackend", backend)
    profile = st.DecoderProfile(prompts=(1, 2, 4))
    sam = st.SamTensorRTSegmenter(exported.encoder, exported.decoder, decoder_profile=profile,
                                  cache_dir="/nonexistent/cache", tolerance=0.2)
    (enc, enc_kw), (dec, dec_kw) = calls
    assert (enc, enc_kw["precision"], enc_kw["profile"]) == (
        exported.encoder, "fp16", ec.ShapeProfile.fixed(256, 256))
    assert (dec, dec_kw["precision"], dec_kw["extra_profiles"]) == (
        exported.decoder, "fp32", profile.tensor_profiles())
    assert enc_kw["cache_dir"] == dec_kw["cache_dir"] == "/nonexistent/cache"
    assert enc_kw["tolerance"] == dec_kw["tolerance"] == 0.2 and enc_kw["validate"]
    assert dec_kw["validation_feeds"](2)["point_coords"].shape == (4, 8, 2)  # the max shapes
    assert sam.decoder_profile == profile and sam.config.image_size == 256
    rgb = crop(photo, "portrait")
    h, w = rgb.shape[:2]
    got = sam.decode(sam.encode(rgb), boxes_xyxy=[[0, 0, w / 2, h / 2]])
    np.testing.assert_allclose(
        got.logits, ort_sam.decode(ort_sam.encode(rgb), boxes_xyxy=[[0, 0, w / 2, h / 2]]).logits,
        atol=1e-4)
    with pytest.raises(ValueError, match="only used with encoder_precision='int8'"):
        st.SamTensorRTSegmenter(exported.encoder, exported.decoder, calibration_dir="frames")
    with pytest.raises(ValueError, match="'int8' needs calibration_dir"):
        st.SamTensorRTSegmenter(exported.encoder, exported.decoder, encoder_precision="int8")


def test_missing_tensorrt_is_a_clear_error(exported, tmp_path, monkeypatch):
    _no_real_tensorrt()
    with pytest.raises(tb.TensorRTUnavailableError, match="no TensorRT runtime|not usable"):
        st.SamTensorRTSegmenter(exported.encoder, exported.decoder, cache_dir=tmp_path / "c")
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # what `import` does for an absent module
    with pytest.raises(tb.TensorRTUnavailableError, match="TensorRT is not usable here") as err:
        st.SamTensorRTSegmenter(exported.encoder, exported.decoder, cache_dir=tmp_path / "c")
    assert "onnxruntime or torch backend" in str(err.value)
    assert not (tmp_path / "c").exists()


def test_export_sam_engine_without_tensorrt_is_one_line(tmp_path, monkeypatch, capsys):
    _no_real_tensorrt()
    from depth_perception.cli import main

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    rc = main(["export-sam", "--model", "tiny", "--random-init", "-o", str(tmp_path / "out"),
               "--engine"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert "export-sam: error: --engine: TensorRT is not usable here" in err[0]
    assert not (tmp_path / "out").exists()  # refused before a wasted export


def test_export_sam_engine_reports_both_engines(exported, tmp_path, monkeypatch, capsys):
    """What ``export-sam --engine`` prints, with the export and the engines stood in for."""
    from depth_perception import cli
    from depth_perception.segmentation import sam_onnx

    made = []

    class Engines:
        def __init__(self, encoder, decoder, encoder_precision):
            made.append((encoder, decoder, encoder_precision))
            spec = st.sam_engine_specs(encoder, decoder, encoder_precision=encoder_precision)[0]
            key = spec.key(**TRT)
            report = ec.ValidationReport([ec.ValidationResult((1, 3, 256, 256), 1e-3, 2.0, 5e-4,
                                                              5e-2)])
            art = tb.EngineArtifact(tmp_path / "e.engine", b"engine", key, built=True,
                                    report=report)
            self.encoder_backend = self.decoder_backend = type("B", (), {"artifact": art})()

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

    monkeypatch.setattr(st, "check_tensorrt_ready", lambda device=0: None)
    monkeypatch.setattr(st, "SamTensorRTSegmenter", Engines)
    monkeypatch.setattr(sam_onnx, "export_sam_onnx", lambda model, out, name: exported)
    assert cli.main(["export-sam", "--model", "tiny", "--random-init", "-o", str(tmp_path),
                     "--engine", "fp32"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert made == [(exported.encoder, exported.decoder, "fp32")]
    assert out[1].startswith(f"encoder engine built: {tmp_path / 'e.engine'} (fp32; checked "
                             "against ONNX Runtime: worst input 1x3x256x256: relative error")
    assert out[2].startswith("decoder engine built: ")


# --------------------------------------------------------------------------------------------------
# Parameters -> segmenter


def sam_params(**values):
    return {"segmentation.source": ["sam"], "segmentation.sam.model": "tiny",
            **{f"segmentation.sam.{k}": v for k, v in values.items()}}


def test_each_backend_builds_its_segmenter(exported, checkpoint, cache, monkeypatch):
    out = config.segmenters_from_parameters(sam_params(checkpoint=str(checkpoint)))
    assert type(out["sam"]) is SamSegmenter
    onnx_dir = str(exported.encoder.parent)
    sam = config.segmenters_from_parameters(sam_params(backend="onnxruntime", onnx_dir=onnx_dir))
    assert type(sam["sam"]) is SamOnnxSegmenter and sam["sam"].config.image_size == 256
    # no onnx_dir: the checkpoint's export in the engine cache (exported by the fixture) is used
    monkeypatch.setenv(ec.ENV_CACHE_DIR, str(cache))
    lines = []
    sam = config.segmenters_from_parameters(
        sam_params(backend="onnxruntime", checkpoint=str(checkpoint)), log=lines.append)
    assert type(sam["sam"]) is SamOnnxSegmenter and not lines
    assert [p.name for p in (cache / "sam_onnx").iterdir()] == [exported.encoder.parent.name]

    built = []

    class Recorder:
        def __init__(self, encoder, decoder, **kwargs):
            built.append((encoder, decoder))

    monkeypatch.setattr(st, "check_tensorrt_ready", lambda device=0: None)
    monkeypatch.setattr(st, "SamTensorRTSegmenter", Recorder)
    sam = config.segmenters_from_parameters(sam_params(backend="tensorrt", onnx_dir=onnx_dir))
    assert isinstance(sam["sam"], Recorder) and built == [(exported.encoder, exported.decoder)]


def test_tensorrt_backend_without_tensorrt_fails_before_exporting(checkpoint, tmp_path,
                                                                  monkeypatch):
    _no_real_tensorrt()
    monkeypatch.setenv(ec.ENV_CACHE_DIR, str(tmp_path))
    with pytest.raises(tb.TensorRTUnavailableError):
        config.segmenters_from_parameters(sam_params(backend="tensorrt",
                                                     checkpoint=str(checkpoint)))
    assert not list(tmp_path.iterdir())


def test_backend_errors_name_the_parameter(tmp_path):
    reason = config.validate_parameters({"segmentation.sam.backend": "tensorrt8"})
    assert reason == ("segmentation.sam.backend must be one of torch, onnxruntime, tensorrt, "
                      "not 'tensorrt8'")
    with pytest.raises(ValueError, match="segmentation.sam.backend must be"):
        config.pipeline_config({"segmentation.sam.backend": "cuda"})
    with pytest.raises(ValueError, match="segmentation.sam.backend must be"):
        config.segmenters_from_parameters(sam_params(backend="cuda", onnx_dir=str(tmp_path)))
    assert config.validate_parameters({"segmentation.sam.backend": "tensorrt",
                                       "segmentation.sam.onnx_dir": "/models/sam"}) is None
    with pytest.raises(ValueError, match="needs segmentation.sam.onnx_dir .* or "
                                         "segmentation.sam.checkpoint"):
        config.segmenters_from_parameters(sam_params(backend="onnxruntime"))
    with pytest.raises(ValueError, match="set segmentation.sam.checkpoint"):
        config.segmenters_from_parameters(sam_params())


def test_onnx_folder_lookup(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        st.find_sam_onnx(tmp_path / "absent")
    with pytest.raises(ValueError, match="no <name>_encoder.onnx .* export-sam"):
        st.find_sam_onnx(tmp_path)
    for name in ("vit_b", "vit_h"):
        for part in ("encoder", "decoder"):
            (tmp_path / f"{name}_{part}.onnx").write_bytes(b"")
    (tmp_path / "lonely_encoder.onnx").write_bytes(b"")  # no decoder: not a pair
    with pytest.raises(ValueError, match=r"several exports \(vit_b, vit_h\)"):
        st.find_sam_onnx(tmp_path)
    assert st.find_sam_onnx(tmp_path, ("vit_h", "sam")).encoder == tmp_path / "vit_h_encoder.onnx"
    (tmp_path / "vit_b_decoder.onnx").unlink()
    assert st.find_sam_onnx(tmp_path).decoder == tmp_path / "vit_h_decoder.onnx"


# --------------------------------------------------------------------------------------------------
# On a GPU: real engines from the tiny SAM export, compared with ONNX Runtime


def _gpu():
    if not tb.tensorrt_available():
        pytest.skip("TensorRT is not installed")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")


@pytest.fixture(scope="module")
def gpu_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("sam_engines")


@pytest.fixture(scope="module")
def gpu_sam(exported, gpu_cache):
    """fp32 engines, so that the comparison with ONNX Runtime can be strict."""
    _gpu()
    with st.SamTensorRTSegmenter(exported.encoder, exported.decoder, encoder_precision="fp32",
                                 cache_dir=gpu_cache) as sam:
        yield sam


def _boxes(h, w):
    return np.array([[0.1, 0.1, 0.6, 0.5], [0.3, 0.4, 0.95, 0.9], [0.0, 0.0, 1.0, 1.0]]) * [w, h, w, h]


def _agree(got, ref, logit_tol):
    """Fraction of equal mask pixels, after checking the logits against ONNX Runtime's relative to
    their range (random weights give a small range; TensorRT's fp32 uses TF32 matmuls)."""
    scale = max(float(np.ptp(ref.logits)), 1e-6)
    assert np.abs(got.logits - ref.logits).max() <= logit_tol * scale
    np.testing.assert_allclose(got.iou, ref.iou, atol=5e-3)
    return float((got.masks == ref.masks).mean())


@pytest.mark.gpu
def test_engines_are_built_validated_and_cached(gpu_sam, gpu_cache):
    for backend, precision in ((gpu_sam.encoder_backend, "fp32"), (gpu_sam.decoder_backend, "fp32")):
        art = backend.artifact
        assert art.built and art.report.ok and art.key.precision == precision
        assert art.engine_path.parent == gpu_cache and ec.sidecar_path(art.engine_path).exists()
    assert len(gpu_sam.decoder_backend.artifact.report.results) == 3  # opt, min, max prompts
    assert gpu_sam.decoder_profile == st.DecoderProfile()
    assert gpu_sam.config.image_size == 256


@pytest.mark.gpu
@pytest.mark.parametrize("aspect", list(ASPECTS))
def test_masks_match_onnxruntime_at_every_aspect(gpu_sam, ort_sam, photo, aspect):
    rgb = crop(photo, aspect)
    h, w = rgb.shape[:2]
    emb, ref_emb = gpu_sam.encode(rgb), ort_sam.encode(rgb)
    assert emb.embeddings.is_cuda and emb.input_size == ref_emb.input_size
    got_emb = emb.embeddings.cpu().numpy()
    assert np.abs(got_emb - ref_emb.embeddings).max() <= 1e-2 * np.ptp(ref_emb.embeddings)
    # (no single-point prompts: random weights give near-equal multimask IoUs, a coin flip)
    for prompts in ({"boxes_xyxy": _boxes(h, w)},
                    {"boxes_xyxy": _boxes(h, w), "points_xy": [[[0.5 * w, 0.5 * h]]] * 3}):
        got, ref = gpu_sam.decode(emb, **prompts), ort_sam.decode(ref_emb, **prompts)
        assert got.masks.shape == (3, h, w)
        assert _agree(got, ref, 3e-2) > 0.97


@pytest.mark.gpu
def test_more_prompts_than_the_engine_takes_are_split(gpu_sam, ort_sam, photo):
    rgb = crop(photo, "4:3")
    emb, ref_emb = gpu_sam.encode(rgb), ort_sam.encode(rgb)
    rng = np.random.default_rng(0)
    xy0 = rng.uniform(0, 200, (20, 2))
    boxes = np.concatenate([xy0, xy0 + rng.uniform(20, 100, (20, 2))], axis=1)  # 20 > 16
    got, ref = gpu_sam.decode(emb, boxes_xyxy=boxes), ort_sam.decode(ref_emb, boxes_xyxy=boxes)
    assert got.masks.shape[0] == 20 and _agree(got, ref, 3e-2) > 0.97


@pytest.mark.gpu
def test_second_construction_loads_both_engines_from_the_cache(gpu_sam, exported, gpu_cache,
                                                               caplog):
    caplog.set_level(logging.INFO)
    with st.SamTensorRTSegmenter(exported.encoder, exported.decoder, encoder_precision="fp32",
                                 cache_dir=gpu_cache) as again:
        for old, new in ((gpu_sam.encoder_backend, again.encoder_backend),
                         (gpu_sam.decoder_backend, again.decoder_backend)):
            assert not new.artifact.built
            assert new.artifact.engine_path == old.artifact.engine_path
    assert "building" not in caplog.text


@pytest.mark.gpu
def test_default_precisions_fp16_encoder(exported, ort_sam, photo, tmp_path):
    _gpu()
    with st.SamTensorRTSegmenter(exported.encoder, exported.decoder, cache_dir=tmp_path) as sam:
        assert sam.encoder_backend.artifact.key.precision == "fp16"
        assert sam.decoder_backend.artifact.key.precision == "fp32"
        assert sam.encoder_backend.artifact.report.ok
        rgb = crop(photo, "portrait")
        h, w = rgb.shape[:2]
        got = sam.decode(sam.encode(rgb), boxes_xyxy=_boxes(h, w))
        ref = ort_sam.decode(ort_sam.encode(rgb), boxes_xyxy=_boxes(h, w))
        assert _agree(got, ref, 0.15) > 0.9


@pytest.mark.gpu
def test_corrupt_decoder_engine_is_rebuilt(gpu_sam, exported, gpu_cache, caplog):
    path = gpu_sam.decoder_backend.artifact.engine_path
    path.write_bytes(path.read_bytes()[:100])
    caplog.set_level(logging.INFO)
    with st.SamTensorRTSegmenter(exported.encoder, exported.decoder, encoder_precision="fp32",
                                 cache_dir=gpu_cache) as again:
        assert again.decoder_backend.artifact.built
        assert not again.encoder_backend.artifact.built
    assert f"engine file {path} is corrupt (it is truncated" in caplog.text
