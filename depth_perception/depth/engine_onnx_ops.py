"""The ONNX operators TensorRT's ONNX parser (onnx-tensorrt) imports, per TensorRT release, as data.

An exported graph that uses an operator outside this list loads and runs in ONNX Runtime, yet
TensorRT refuses it at build time ("No importer registered for op"), minutes into a build on the
robot. :func:`unsupported_ops` finds such operators from the graph alone, without TensorRT.

Sources (the operator tables of onnx-tensorrt, https://github.com/onnx/onnx-tensorrt):

* ``release/8.5-GA/docs/operators.md``: every operator marked supported ("Y"). TensorRT 8.5 is
  the oldest release this package supports (JetPack 5.1).
* ``docs/Changelog.md``, "TensorRT 8.6 EA": added ``GroupNormalization``, ``LayerNormalization``,
  ``IsInf`` (JetPack 5.1.2 ships 8.5.2; 8.6 comes with the x86 and later Jetson releases).
* ``release/9.2-GA/docs/operators.md``: ``CastLike`` and ``Hardmax`` are listed, absent in 8.6.
  TensorRT 10 (JetPack 6) parses every operator of 9.2 and more; the later additions are not listed
  here because no zoo export uses them.

Only the default ONNX domain is covered: an operator of another domain needs a TensorRT plugin.
The tables' per-operator restrictions (e.g. ``Slice`` axes as initialisers) are not checked here;
the engine build reports those. Pure: no TensorRT, no GPU; reading a graph needs ``onnx``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

#: onnx-tensorrt release/8.5-GA docs/operators.md, the operators marked "Y"
OPS_TENSORRT_8_5 = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast Ceil
Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace
DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather
GatherElements GatherND Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual
GridSample GRU HardSwish HardSigmoid Identity If ImageScaler InstanceNormalization IsNaN LeakyRelu
Less LessOrEqual Log LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean
MeanVarianceNormalization Min Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad
ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike RandomUniform
RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax
ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence RNN
RoiAlign Round ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin
Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh
ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor
""".split())

#: (first TensorRT release that parses them, operators), oldest first; see the module docstring
ADDED_AFTER_8_5: tuple[tuple[tuple[int, int], frozenset[str]], ...] = (
    ((8, 6), frozenset({"GroupNormalization", "LayerNormalization", "IsInf"})),
    ((9, 2), frozenset({"CastLike", "Hardmax"})),
)

#: never parsed by any TensorRT release: ONNX's sequence and optional types have no TensorRT tensor
SEQUENCE_OPS = frozenset({
    "ConcatFromSequence", "SequenceAt", "SequenceConstruct", "SequenceEmpty", "SequenceErase",
    "SequenceInsert", "SequenceLength", "SequenceMap", "SplitToSequence", "Optional",
    "OptionalGetElement", "OptionalHasElement",
})

_DEFAULT_DOMAINS = ("", "ai.onnx")


def _major_minor(tensorrt_version: str | tuple[int, int]) -> tuple[int, int]:
    if isinstance(tensorrt_version, tuple):
        return int(tensorrt_version[0]), int(tensorrt_version[1])
    from .tensorrt_import import parse_tensorrt_version  # pure; imports no TensorRT

    return parse_tensorrt_version(tensorrt_version)


def parser_ops(tensorrt_version: str | tuple[int, int]) -> frozenset[str]:
    """The default-domain operators TensorRT ``tensorrt_version`` (``"8.5.2.2"`` or ``(10, 3)``)
    parses; ``ValueError`` below 8.5 (no table: this package does not support it)."""
    version = _major_minor(tensorrt_version)
    if version < (8, 5):
        raise ValueError(f"no operator table for TensorRT {version[0]}.{version[1]} (< 8.5)")
    ops = set(OPS_TENSORRT_8_5)
    for since, added in ADDED_AFTER_8_5:
        if version >= since:
            ops |= added
    return frozenset(ops)


def graph_ops(model: Any) -> Counter[str]:
    """How often each operator occurs in an ``onnx.ModelProto`` (or an ONNX file's path, read
    without its external weights), subgraphs of ``If``/``Loop``/``Scan`` included. Operators of
    another domain are counted as ``domain::Op``."""
    if isinstance(model, (str, Path)):
        import onnx

        model = onnx.load(str(model), load_external_data=False)
    counts: Counter[str] = Counter()
    graphs = [model.graph]
    while graphs:
        graph = graphs.pop()
        for node in graph.node:
            name = node.op_type if node.domain in _DEFAULT_DOMAINS else f"{node.domain}::{node.op_type}"
            counts[name] += 1
            for attr in node.attribute:
                if attr.HasField("g"):
                    graphs.append(attr.g)
                graphs.extend(attr.graphs)
    return counts


def unsupported_ops(model: Any, tensorrt_version: str | tuple[int, int]) -> dict[str, int]:
    """Operator -> count for the operators of ``model`` (see :func:`graph_ops`) that TensorRT
    ``tensorrt_version``'s ONNX parser does not import; empty when it parses every one."""
    supported = parser_ops(tensorrt_version)
    return {op: n for op, n in sorted(graph_ops(model).items()) if op not in supported}


def describe_unsupported(found: dict[str, int], tensorrt_version: str | tuple[int, int]) -> str:
    """One readable line: ``TensorRT 8.5 cannot parse: LayerNormalization (x8)``."""
    major, minor = _major_minor(tensorrt_version)
    listed = ", ".join(f"{op} (x{n})" for op, n in found.items())
    return f"TensorRT {major}.{minor}'s ONNX parser has no importer for: {listed}"
