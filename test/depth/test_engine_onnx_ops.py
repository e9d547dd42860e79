"""The table of operators TensorRT's ONNX parser imports, and the check of a graph against it."""

from __future__ import annotations

import pytest

from depth_perception.depth.engine_onnx_ops import (
    OPS_TENSORRT_8_5, SEQUENCE_OPS, describe_unsupported, graph_ops, parser_ops, unsupported_ops,
)

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402


def test_the_table_grows_with_the_tensorrt_release() -> None:
    assert parser_ops("8.5.2.2") == OPS_TENSORRT_8_5
    assert "LayerNormalization" not in parser_ops("8.5") and "LayerNormalization" in parser_ops("8.6.1")
    assert "CastLike" not in parser_ops((8, 6)) and "CastLike" in parser_ops("10.3.0.30")
    assert parser_ops("8.5") < parser_ops("8.6") < parser_ops("10.3") == parser_ops("10.13")
    # the ops our graphs are made of, and none of ONNX's sequence types, in every release
    for version in ("8.5", "8.6", "10.3"):
        assert {"Conv", "MatMul", "Resize", "Slice", "ScatterND", "If"} <= parser_ops(version)
        assert not SEQUENCE_OPS & parser_ops(version)
    with pytest.raises(ValueError, match="no operator table for TensorRT 8.4"):
        parser_ops("8.4.3")


def _graph_with_a_sequence_inside_an_if() -> object:
    """x -> If(cond) { then: SplitToSequence + SequenceAt, else: Identity } -> LayerNormalization."""
    seq = helper.make_graph(
        [helper.make_node("SplitToSequence", ["x"], ["s"], axis=0),
         helper.make_node("Constant", [], ["i"], value=helper.make_tensor("i", TensorProto.INT64, [], [0])),
         helper.make_node("SequenceAt", ["s", "i"], ["t"])],
        "then", [], [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)])
    other = helper.make_graph([helper.make_node("Identity", ["x"], ["e"])], "else", [],
                              [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)])
    graph = helper.make_graph(
        [helper.make_node("If", ["cond"], ["y"], then_branch=seq, else_branch=other),
         helper.make_node("LayerNormalization", ["y", "scale"], ["z"]),
         helper.make_node("CustomThing", ["z"], ["out"], domain="com.example")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4]),
              helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
              helper.make_tensor_value_info("scale", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)])
    return helper.make_model(graph)


def test_unsupported_operators_are_found_in_subgraphs_and_other_domains(tmp_path) -> None:
    model = _graph_with_a_sequence_inside_an_if()
    assert graph_ops(model)["SequenceAt"] == 1 and graph_ops(model)["Identity"] == 1
    expected_86 = {"SequenceAt": 1, "SplitToSequence": 1, "com.example::CustomThing": 1}
    assert unsupported_ops(model, "8.6") == expected_86
    assert unsupported_ops(model, "8.5") == {**expected_86, "LayerNormalization": 1}
    onnx.save(model, str(tmp_path / "g.onnx"))  # a path reads the same graph
    assert unsupported_ops(tmp_path / "g.onnx", "10.3") == expected_86
    line = describe_unsupported(unsupported_ops(model, "8.5.2.2"), "8.5.2.2")
    assert line.startswith("TensorRT 8.5's ONNX parser has no importer for: ")
    assert "LayerNormalization (x1)" in line and "SplitToSequence (x1)" in line


def test_an_engine_build_names_the_operators_the_parser_lacks_and_the_fix(tmp_path) -> None:
    """Logged before the build, and added to TensorRT's own error if its parser fails."""
    from depth_perception.depth.tensorrt_engines import unparseable_ops_note

    path = tmp_path / "seq.onnx"
    onnx.save(_graph_with_a_sequence_inside_an_if(), str(path))
    note = unparseable_ops_note(path, "10.3.0.30")
    assert note is not None and note.startswith(
        "TensorRT 10.3's ONNX parser has no importer for: SequenceAt (x1), SplitToSequence (x1), "
        "com.example::CustomThing (x1) in ")
    assert note.endswith("seq.onnx: re-export it with `depth-perception export --tensorrt 10.3.0.30` (or "
                         "on this machine), or run the model on the onnxruntime or torch backend")
    not_onnx = tmp_path / "garbage.onnx"
    not_onnx.write_bytes(b"not a graph")
    assert unparseable_ops_note(not_onnx, "10.3") is None  # left to TensorRT's parser to report
