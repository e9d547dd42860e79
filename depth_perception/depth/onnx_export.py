"""ONNX export of the zoo's networks, correct at every input size.

The graph takes ``pixel_values`` (N x 3 x H x W float32, normalised; N, H and W dynamic when
``dynamic=True``) and gives ``predicted_depth`` (N x H x W float32, the network's raw output: relative
inverse depth or metres per the spec; Depth Pro's is canonical inverse depth, plus ``field_of_view``
in degrees). Prompt Depth Anything also takes ``prompt_depth`` (N x 1 x h x w metres, any h, w).

Traps this module beats (each one produces an ONNX file that loads and runs, yet gives wrong depth):

* ``int()`` on a traced size turns it into a constant: the Depth Anything head's
  ``int(patch_height * patch_size)`` (and ``torch_int`` in Prompt Depth Anything) would pin the output
  to the export size. During export those names are shadowed in the transformers module by versions
  that keep symbolic sizes symbolic (the library's own code still runs).
* DINOv2/BEiT skip position-embedding interpolation at their native square size, so an export traced
  there keeps fixed embeddings: the sample input is never square nor the native size.
* torch.export specialises sizes 0 and 1: a dynamic batch needs a sample batch of 2.
* The default SDPA attention exports to a slower graph in ONNX Runtime than eager attention.
* ZoeDepth's reassemble stage splits its stacked stages with ``split(batch_size)``: with a dynamic
  batch that is ``SplitToSequence``/``SequenceAt``, which TensorRT cannot parse (and onnxscript's
  optimiser gives up on); a sequence-free forward is swapped in while tracing
  (:func:`export_patches`).

Each export is checked against torch on a second input of another size and aspect ratio before the
file is written; a mismatch raises :class:`ExportError` with the measured error.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .zoo import ModelSpec

#: the opset torch's exporter writes natively; a lower target is converted from it after export
EXPORTER_OPSET = 18
#: parsed by every supported TensorRT (8.5, JetPack 5.1's, and newer): the default without one
PORTABLE_OPSET = 17
INPUT_NAME = "pixel_values"
OUTPUT_NAME = "predicted_depth"
PROMPT_NAME = "prompt_depth"
#: fp32 weights above this are written beside the graph (``<file>.data``): protobuf's 2 GB limit
#: is on the whole file, graph included, so stay well below it (the SAM exporter's margin)
EXTERNAL_DATA_THRESHOLD_BYTES = 1_500_000_000
FOV_NAME = "field_of_view"


class ExportError(RuntimeError):
    """The export failed or gave a graph that disagrees with torch."""


def _symbolic_int(x: Any) -> Any:
    """``int`` that leaves torch.export's symbolic sizes symbolic instead of freezing them."""
    import torch

    if isinstance(x, torch.SymInt):
        return x
    if isinstance(x, torch.SymFloat):
        return torch.sym_int(x)
    return builtins.int(x)


def _symbolic_torch_int(x: Any) -> Any:
    import torch

    if isinstance(x, (torch.SymInt, torch.SymFloat)):
        return _symbolic_int(x)
    if isinstance(x, torch.Tensor):
        return x.to(torch.int64) if torch.jit.is_tracing() else builtins.int(x)
    return builtins.int(x)


@contextlib.contextmanager
def symbolic_size_patches() -> Iterator[None]:
    """Shadow ``int``/``torch_int`` in the transformers modules whose heads turn sizes into ints."""
    import importlib
    from unittest import mock

    patches = []
    for mod_name, attr, repl in (
        ("transformers.models.depth_anything.modeling_depth_anything", "int", _symbolic_int),
        ("transformers.models.prompt_depth_anything.modeling_prompt_depth_anything", "torch_int",
         _symbolic_torch_int),
        ("transformers.models.dinov2.modeling_dinov2", "torch_int", _symbolic_torch_int),
        ("transformers.models.beit.modeling_beit", "torch_int", _symbolic_torch_int),
        ("transformers.models.dpt.modeling_dpt", "torch_int", _symbolic_torch_int),
    ):
        try:
            module = importlib.import_module(mod_name)
        except ImportError:
            continue
        patches.append(mock.patch.object(module, attr, repl, create=True))
    with contextlib.ExitStack() as stack:
        for p in patches:
            stack.enter_context(p)
        yield


def _zoedepth_reassemble_forward(self: Any, hidden_states: list[Any], patch_height: Any,
                                 patch_width: Any) -> list[Any]:
    """``ZoeDepthReassembleStage.forward`` with its one ``split(batch_size)`` replaced by slices.

    The library stacks the backbone stages along the batch and splits them back with
    ``hidden_states.split(batch_size, dim=0)``; with a symbolic batch the exporter cannot count the
    pieces and writes ``SplitToSequence``/``SequenceAt``, which onnx-tensorrt does not parse. The
    number of stages is the length of the list, so the pieces are cut with one ``Slice`` each.
    Everything else is the library's code, statement for statement (transformers 4.45-5.x)."""
    import torch

    batch_size = hidden_states[0].shape[0]
    num_stages = len(hidden_states)
    stacked: Any = torch.cat(hidden_states, dim=0)
    cls_token, stacked = stacked[:, 0], stacked[:, 1:]
    total_batch_size, sequence_length, num_channels = stacked.shape
    stacked = stacked.reshape(total_batch_size, patch_height, patch_width, num_channels)
    stacked = stacked.permute(0, 3, 1, 2).contiguous()
    if self.readout_type == "project":
        stacked = stacked.flatten(2).permute((0, 2, 1))
        readout = cls_token.unsqueeze(dim=1).expand_as(stacked)
        stacked = torch.cat((stacked, readout), -1)
    elif self.readout_type == "add":
        stacked = stacked + cls_token.unsqueeze(-1)
    out = []
    for stage_idx in range(num_stages):
        hidden_state = stacked[stage_idx * batch_size:(stage_idx + 1) * batch_size]
        if self.readout_type == "project":
            hidden_state = self.readout_projects[stage_idx](hidden_state)
        hidden_state = hidden_state.permute(0, 2, 1).reshape(batch_size, -1, patch_height, patch_width)
        hidden_state = self.layers[stage_idx](hidden_state)
        out.append(hidden_state)
    return out


@contextlib.contextmanager
def export_patches() -> Iterator[None]:
    """Everything swapped in while tracing for ONNX (the library's own code runs otherwise):
    :func:`symbolic_size_patches` and ZoeDepth's sequence-free reassemble stage
    (:func:`_zoedepth_reassemble_forward`)."""
    from unittest import mock

    with contextlib.ExitStack() as stack:
        stack.enter_context(symbolic_size_patches())
        try:
            from transformers.models.zoedepth import modeling_zoedepth
        except ImportError:
            pass
        else:
            stage = getattr(modeling_zoedepth, "ZoeDepthReassembleStage", None)
            if stage is not None:
                stack.enter_context(mock.patch.object(stage, "forward", _zoedepth_reassemble_forward))
        yield


def set_eager_attention(model: Any) -> None:
    """Switch every transformers sub-model to eager attention (faster once exported to ONNX)."""
    seen = set()
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is None or id(config) in seen or not hasattr(config, "_attn_implementation"):
            continue
        seen.add(id(config))
        try:
            config._attn_implementation = "eager"
        except (AttributeError, ValueError):
            pass


class _ExportWrapper:
    """Builds a plain ``nn.Module`` whose forward returns tensors (not a ModelOutput)."""

    @staticmethod
    def make(model: Any, spec: ModelSpec) -> Any:
        import torch

        class Wrapped(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, pixel_values: torch.Tensor, prompt_depth: torch.Tensor | None = None
                        ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
                kwargs = {"prompt_depth": prompt_depth} if prompt_depth is not None else {}
                out = self.model(pixel_values=pixel_values, return_dict=True, **kwargs)
                fov = getattr(out, "field_of_view", None)
                if fov is not None:
                    return out.predicted_depth, fov
                return out.predicted_depth

        return Wrapped().eval()


def sample_shapes(spec: ModelSpec, height: int, width: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """(trace size, check size): for dynamic models two non-square, non-native, different sizes."""
    if not spec.dynamic_size:
        return (height, width), (height, width)
    m = spec.patch_multiple
    h, w = _round(height, m), _round(width, m)
    if h == w:  # never trace at a square size (native-size shortcut in the position embeddings)
        w += m
    check = (h + m, w + 2 * m) if h <= w else (h + 2 * m, w + m)
    return (h, w), (check[1], check[0])  # the check transposes the aspect ratio


def opset_for_tensorrt(version: str | None) -> int:
    """The ONNX opset to export at for TensorRT ``version`` (``"8.5.2.2"``, ``"10.13.0.35"``;
    None: no TensorRT installed). TensorRT 8.5-8.6 parse opsets up to 17, TensorRT 10 up to 20 or
    more: 17 below 10 and without TensorRT (whichever TensorRT builds the engine later parses it),
    else the exporter's own 18 (no conversion)."""
    if version is None:
        return PORTABLE_OPSET
    from .tensorrt_import import parse_tensorrt_version  # pure; imports no TensorRT

    major, _minor = parse_tensorrt_version(version)
    return EXPORTER_OPSET if major >= 10 else PORTABLE_OPSET


def installed_tensorrt_version() -> str | None:
    """The installed TensorRT's version from its package metadata (no import, no GPU needed), or
    None. The pip wheels are ``tensorrt`` (and ``tensorrt-cu1x``); JetPack's apt package has no
    metadata, so its module's ``__version__`` is read."""
    import importlib.metadata
    import importlib.util

    for dist in ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu11"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    if importlib.util.find_spec("tensorrt") is None:
        return None
    try:
        import tensorrt
    except Exception:  # noqa: BLE001 - a broken install (missing libnvinfer) is no TensorRT
        return None
    version = getattr(tensorrt, "__version__", None)  # type stubs have none
    return str(version) if version else None


def default_opset() -> int:
    """The opset an export uses unless told otherwise: what the installed TensorRT parses."""
    return opset_for_tensorrt(installed_tensorrt_version())


#: the oldest TensorRT an export is made for when none is installed or named (JetPack 5.1)
OLDEST_TENSORRT = "8.5"
#: the first TensorRT whose ONNX parser imports LayerNormalization (onnx-tensorrt Changelog, 8.6 EA)
LAYER_NORM_TENSORRT = (8, 6)


def target_tensorrt(tensorrt: str | None = None) -> str:
    """The TensorRT release an export is made for: ``tensorrt`` if given, else the installed one,
    else :data:`OLDEST_TENSORRT` (a graph every supported TensorRT parses)."""
    return tensorrt or installed_tensorrt_version() or OLDEST_TENSORRT


def needs_layer_norm_decomposition(tensorrt: str) -> bool:
    """TensorRT 8.5 has no importer for LayerNormalization (opset 17): spell it out for it."""
    from .tensorrt_import import parse_tensorrt_version  # pure; imports no TensorRT

    return parse_tensorrt_version(tensorrt) < LAYER_NORM_TENSORRT


def _round(x: int, m: int) -> int:
    return max(m, int(round(x / m)) * m)


def export_onnx(
    model: Any,
    path: str | os.PathLike,
    height: int,
    width: int,
    dynamic: bool = True,
    opset: int | None = None,
    spec: ModelSpec | None = None,
    check: bool = True,
    tolerance: float = 1e-4,
    optimize: bool = True,
    external_data_threshold_bytes: int = EXTERNAL_DATA_THRESHOLD_BYTES,
    tensorrt: str | None = None,
) -> Path:
    """Export ``model`` (a zoo network in eval mode) to ``path``; return the path.

    ``height``/``width`` give the sample size (network input pixels). With ``dynamic`` the batch,
    height and width are free (models with ``resize_mode="fixed"`` stay at their fixed size).
    ``check`` compares ONNX Runtime with torch on a second size; a relative error above
    ``tolerance`` (of the output range) raises :class:`ExportError` and writes nothing.
    ``optimize`` runs onnxscript's graph optimiser (constant folding, dead code); ONNX Runtime
    optimises at load time too, so it mostly makes the file smaller and loading faster.
    A model whose fp32 weights exceed ``external_data_threshold_bytes`` (Depth Pro: 3.8 GB) keeps
    them in ``<path>.data`` beside the graph: a protobuf file cannot exceed 2 GB. Keep the two
    files together; ONNX Runtime and TensorRT read the weights from beside the graph.
    ``tensorrt`` names the TensorRT release that will parse the graph (``"8.5"``, ``"10.3"``;
    default :func:`target_tensorrt`: the installed one, else 8.5): it sets the default opset, and
    for TensorRT 8.5 LayerNormalization is written as the elementary ops it stands for.
    """
    import torch

    spec = spec or _spec_of(model)
    if not spec.exportable:
        raise ExportError(f"{spec.name}: {spec.family} models cannot be exported to ONNX (torch only)")
    path = Path(path)
    target = target_tensorrt(tensorrt)
    opset = opset_for_tensorrt(target) if opset is None else int(opset)
    if tensorrt is not None and opset > opset_for_tensorrt(target):
        raise ValueError(f"opset {opset} is newer than TensorRT {tensorrt} parses (up to "
                         f"{opset_for_tensorrt(target)} here): leave --opset out")
    if opset < 17:
        raise ValueError(f"opset {opset} is too old: need >= 17 (LayerNormalization)")
    dynamic = dynamic and spec.dynamic_size
    (th, tw), (ch, cw) = sample_shapes(spec, height, width) if dynamic else ((height, width),) * 2
    model = model.eval().float()
    set_eager_attention(model)
    wrapped = _ExportWrapper.make(model, spec)
    batch = 2 if dynamic else 1  # torch.export specialises a sample batch of 1
    args, input_names, dyn = _sample_inputs(spec, batch, th, tw, dynamic)
    output_names = [OUTPUT_NAME] + ([FOV_NAME] if spec.family == "depth_pro" else [])
    external = weight_bytes(model) > external_data_threshold_bytes
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        tmp_path = Path(tmp) / path.name
        try:
            with torch.no_grad(), export_patches():
                program = torch.onnx.export(
                    wrapped, args, dynamo=True, opset_version=max(opset, EXPORTER_OPSET),
                    input_names=input_names,
                    output_names=output_names, dynamic_shapes=dyn, verbose=False,
                    optimize=False, external_data=False,
                )
        except Exception as exc:  # noqa: BLE001 - exporter failures come in many types
            raise ExportError(f"{spec.name}: ONNX export failed: {type(exc).__name__}: {exc}") from exc
        _save_program(program, tmp_path, optimize, external, opset, spec.name,
                      decompose_layer_norm=needs_layer_norm_decomposition(target))
        if check:
            sizes = [(th, tw)] + ([(ch, cw)] if dynamic else [])
            err = max_relative_error(wrapped, tmp_path, sizes, spec, batch=1)
            if not err <= tolerance:
                raise ExportError(
                    f"{spec.name}: exported graph disagrees with torch (relative error {err:.2e} > "
                    f"{tolerance:.0e} of the output range at sizes {sizes}); not written"
                )
        for f in Path(tmp).iterdir():  # the graph, and its weights when stored externally
            os.replace(f, path.parent / f.name)
    return path


def weight_bytes(model: Any) -> int:
    """Bytes of ``model``'s parameters and buffers in fp32: the size of its ONNX initialisers."""
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(int(t.numel()) * 4 for t in tensors)


def external_data_path(path: str | os.PathLike) -> Path:
    """Where :func:`export_onnx` keeps the weights of a graph written to ``path`` when they are
    stored externally (``<path>.data``)."""
    p = Path(path)
    return p.with_name(p.name + ".data")


def _sample_inputs(spec: ModelSpec, batch: int, height: int, width: int, dynamic: bool
                   ) -> tuple[tuple[Any, ...], list[str], dict[str, Any] | None]:
    """(sample tensors, input names, dynamic axes) to trace with: ``pixel_values`` batch x 3 x
    height x width ~ N(0, 1), plus a ``prompt_depth`` batch x 1 x h x w in metres (1 to 2) for
    models that take one; batch, height and width are dynamic when ``dynamic``."""
    import torch

    gen = torch.Generator().manual_seed(0)
    args: tuple[Any, ...] = (torch.randn(batch, 3, height, width, generator=gen),)
    input_names = [INPUT_NAME]
    dyn: dict[str, Any] | None = None
    if dynamic:
        d = torch.export.Dim.DYNAMIC
        dyn = {"pixel_values": {0: d, 2: d, 3: d}}
    if "prompt_depth" in spec.extra_inputs:
        prompt_hw = (max(2, height // 7), max(2, width // 5))
        args = (args[0], 1.0 + torch.rand(batch, 1, *prompt_hw, generator=gen))
        input_names.append(PROMPT_NAME)
        if dyn is not None:
            dyn["prompt_depth"] = {0: d, 2: d, 3: d}
    return args, input_names, dyn


def _save_program(program: Any, path: Path, optimize: bool, external_data: bool = False,
                  opset: int = EXPORTER_OPSET, name: str = "model",
                  decompose_layer_norm: bool = False) -> None:
    """Write an exported ONNX program to ``path``, through onnxscript's optimiser if ``optimize``
    (constant folding at least when converting: only a constant-folded graph has the constant axes
    that opset 17's Reduce*/Split/Squeeze attributes need), converted down to ``opset``; with ``external_data``
    the weights go to ``<path>.data`` (:func:`external_data_path`)."""
    plain = program.model_proto  # before the optimiser touches the program
    proto = plain
    convert = opset < _opset_of(plain)
    if optimize or convert:
        try:
            if optimize:
                program.optimize()
            else:
                _fold_constants(program.model)
            proto = program.model_proto
        except Exception:  # noqa: BLE001
            # onnxscript's optimiser may fail on graphs it does not know (sequence ops); ONNX
            # Runtime optimises the graph at load time anyway
            proto = plain
    if convert:
        proto = _convert_opset(proto, opset, name)
    if decompose_layer_norm:
        decompose_layer_normalization(proto, name)
    _save_proto(proto, path, external_data)


def _fold_constants(model: Any) -> None:
    """Constant folding alone on an ``onnx_ir`` model, in place: what converting to an older opset
    needs (constant axes). onnxscript's full optimiser also runs its pattern rewrites, which take
    most of its time on large graphs (ZoeDepth, BEiT) and that ONNX Runtime redoes at load time."""
    import onnx_ir.passes.common as common_passes
    import onnxscript.optimizer

    common_passes.InlinePass()(model)  # torchlib functions (their CastLike, ...) into the graph
    onnxscript.optimizer.fold_constants(model, onnx_shape_inference=True)
    common_passes.RemoveUnusedNodesPass()(model)
    common_passes.RemoveUnusedFunctionsPass()(model)
    common_passes.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0)(model)


def decompose_layer_normalization(proto: Any, name: str = "model") -> int:
    """Rewrite every float32 ``LayerNormalization`` of ``proto`` (in place) as the ops it is
    defined by: ``(x - mean) / sqrt(var + eps) * scale + bias`` over the axes from ``axis`` to the
    last (ReduceMean, Sub, Pow, Add, Sqrt, Div, Mul), which TensorRT 8.5 parses. Returns how many were
    rewritten. Its optional Mean/InvStdDev outputs (training only) must be unused."""
    from onnx import TensorProto, helper, numpy_helper

    graph = proto.graph
    opset = _opset_of(proto)
    consumed = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    nodes, count = [], 0
    for node in graph.node:
        if node.op_type != "LayerNormalization" or node.domain not in ("", "ai.onnx"):
            nodes.append(node)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        axis, eps = int(attrs.get("axis", -1)), float(attrs.get("epsilon", 1e-5))
        if axis >= 0 or int(attrs.get("stash_type", 1)) != TensorProto.FLOAT:
            raise ExportError(f"{name}: LayerNormalization {node.name!r} (axis {axis}, stash_type "
                              f"{attrs.get('stash_type', 1)}) has no rewrite for TensorRT 8.5")
        if any(o and o in consumed for o in node.output[1:]):
            raise ExportError(f"{name}: LayerNormalization {node.name!r} has its mean or inverse "
                              "deviation used: no rewrite for TensorRT 8.5")
        axes = list(range(axis, 0))
        p = f"{node.name or node.output[0]}/decomposed"
        x, y = node.input[0], node.output[0]
        new = []

        def reduce_mean(src: str, dst: str) -> None:
            if opset >= 18:  # axes became an input at 18
                graph.initializer.append(numpy_helper.from_array(np.asarray(axes, np.int64), f"{p}/axes"))
                new.append(helper.make_node("ReduceMean", [src, f"{p}/axes"], [dst], keepdims=1))
            else:
                new.append(helper.make_node("ReduceMean", [src], [dst], axes=axes, keepdims=1))

        graph.initializer.append(numpy_helper.from_array(np.asarray(eps, np.float32), f"{p}/eps"))
        graph.initializer.append(numpy_helper.from_array(np.asarray(2.0, np.float32), f"{p}/two"))
        reduce_mean(x, f"{p}/mean")
        new.append(helper.make_node("Sub", [x, f"{p}/mean"], [f"{p}/centred"]))
        # Pow, not Mul: the pattern ONNX Runtime's LayerNormFusion recognises and fuses back
        new.append(helper.make_node("Pow", [f"{p}/centred", f"{p}/two"], [f"{p}/squared"]))
        reduce_mean(f"{p}/squared", f"{p}/var")
        new.append(helper.make_node("Add", [f"{p}/var", f"{p}/eps"], [f"{p}/var_eps"]))
        new.append(helper.make_node("Sqrt", [f"{p}/var_eps"], [f"{p}/std"]))
        new.append(helper.make_node("Div", [f"{p}/centred", f"{p}/std"], [f"{p}/normed"]))
        bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
        new.append(helper.make_node("Mul", [f"{p}/normed", node.input[1]],
                                    [f"{p}/scaled" if bias else y]))
        if bias:
            new.append(helper.make_node("Add", [f"{p}/scaled", bias], [y]))
        for i, n in enumerate(new):
            n.name = f"{p}/{i}"
        nodes.extend(new)
        count += 1
    if count:
        del graph.node[:]
        graph.node.extend(nodes)
    return count


#: Reduce ops whose axes became an input (and gained ``noop_with_empty_axes``) at opset 18
_REDUCE_18 = ("ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean",
              "ReduceMin", "ReduceProd", "ReduceSumSquare")


def _drop_opset18_reduce_attribute(graph: Any, opset: int, name: str) -> None:
    """ONNX's converter moves the axes of these ops back to an attribute but keeps opset 18's
    ``noop_with_empty_axes``, which opset 17 refuses (an invalid graph): drop it where it has its
    default 0, the only value that means the same at 17."""
    if opset >= 18:
        return
    for node in graph.node:
        if node.op_type not in _REDUCE_18:
            continue
        for attr in list(node.attribute):
            if attr.name == "noop_with_empty_axes":
                if attr.i:
                    raise ExportError(f"{name}: {node.op_type} with noop_with_empty_axes=1 has no "
                                      f"opset {opset} equivalent")
                node.attribute.remove(attr)


_ASIDE = "depth_perception.aside"  # private domain of ops set aside during conversion


def _restore_aside(proto: Any) -> None:
    for node in proto.graph.node:
        if node.domain == _ASIDE:
            node.domain = ""
    for i in reversed(range(len(proto.opset_import))):
        if proto.opset_import[i].domain == _ASIDE:
            del proto.opset_import[i]


def _opset_of(proto: Any) -> int:
    return max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)


def _convert_opset(proto: Any, opset: int, name: str) -> Any:
    """``proto`` converted to the default-domain ``opset`` (ONNX's version converter), or
    :class:`ExportError` naming the opset and why."""
    from onnx import version_converter

    # The converter serialises the model (protobuf's 2 GB limit: Depth Pro has 3.8 GB) but reads
    # only small constants (axes), so the weights stay aside and are put back by name.
    weights = {t.name: t.raw_data for t in proto.graph.initializer if len(t.raw_data) > 1024}
    for t in proto.graph.initializer:
        if t.name in weights:
            t.raw_data = b""
    # The converter has no adapter back for two ops that changed at 18 only by an option: Pad's
    # optional ``axes`` input and Split's ``num_outputs`` (opset 17 splits equally into as many
    # outputs as the node has). Without the option they are the same op, so they are set aside
    # in a private domain while converting (the check against torch then runs the result).
    aside = [n for n in proto.graph.node if n.op_type in ("Pad", "Split") and n.domain in ("", "ai.onnx")]
    for node in aside:
        if node.op_type == "Pad" and len(node.input) > 3 and node.input[3]:
            raise ExportError(f"{name}: a Pad with axes (opset 18) has no opset {opset} equivalent")
        for attr in list(node.attribute):
            if attr.name == "num_outputs":
                if attr.i != len(node.output):
                    raise ExportError(f"{name}: Split num_outputs {attr.i} != its {len(node.output)} "
                                      f"outputs has no opset {opset} equivalent")
                node.attribute.remove(attr)
        node.domain = _ASIDE
    if aside:
        proto.opset_import.add(domain=_ASIDE, version=1)
    try:
        converted = version_converter.convert_version(proto, opset)
    except Exception as exc:  # noqa: BLE001 - the converter raises RuntimeError/ValueError
        raise ExportError(
            f"{name}: the graph exported at opset {_opset_of(proto)} does not convert to opset "
            f"{opset} ({exc}); TensorRT 10 parses opset 18: export with opset=18 for it") from exc
    finally:
        for t in proto.graph.initializer:
            if t.name in weights:
                t.raw_data = weights[t.name]
        _restore_aside(proto)
    _restore_aside(converted)
    for t in converted.graph.initializer:
        if t.name in weights:
            t.raw_data = weights[t.name]
    _drop_opset18_reduce_attribute(converted.graph, opset, name)
    if _opset_of(converted) != opset:
        raise ExportError(f"{name}: conversion to opset {opset} gave opset {_opset_of(converted)}")
    return converted


def _save_proto(proto: Any, path: Path, external_data: bool) -> None:
    import onnx

    if external_data:
        onnx.save_model(proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=external_data_path(path).name, size_threshold=1024,
                        convert_attribute=True)
    else:
        path.write_bytes(proto.SerializeToString())


def _spec_of(model: Any) -> ModelSpec:
    from .zoo import get_spec

    name = getattr(model, "_depth_spec_name", None)
    if name is None:
        raise ValueError("pass spec= (the model was not built by depth_perception.depth)")
    return get_spec(name)


def max_relative_error(wrapped: Any, onnx_path: Path, sizes: list[tuple[int, int]], spec: ModelSpec,
                       batch: int = 1) -> float:
    """Largest |onnx - torch| / range(torch) of ``predicted_depth`` over the given input sizes."""
    import onnxruntime as ort
    import torch

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    worst = 0.0
    gen = torch.Generator().manual_seed(1)
    for h, w in sizes:
        x = torch.randn(batch, 3, h, w, generator=gen)
        feeds = {INPUT_NAME: x.numpy()}
        targs: tuple[Any, ...] = (x,)
        if "prompt_depth" in spec.extra_inputs:
            p = 1.0 + torch.rand(batch, 1, max(2, h // 9), max(2, w // 6), generator=gen)
            feeds[PROMPT_NAME] = p.numpy()
            targs = (x, p)
        with torch.no_grad():
            ref = wrapped(*targs)
        ref = (ref[0] if isinstance(ref, tuple) else ref).numpy()
        got = sess.run([OUTPUT_NAME], feeds)[0]
        if got.shape != ref.shape:
            return float("inf")
        span = float(ref.max() - ref.min()) or 1.0
        worst = max(worst, float(np.abs(got - ref).max()) / span)
    return worst
