"""One dynamo trace per network and sample shape for the whole session.

``export_onnx`` traces the network with ``torch.onnx.export`` and then works on the traced graph:
the optimiser, the conversion to an older opset, the LayerNormalization rewrite for TensorRT 8.5,
external weights, the self-check against torch. Tests export the same tiny network more than once
to compare those variants (the default opset and TensorRT 10's, TensorRT 8.5 and 8.6, with and
without the optimiser), and the trace is what takes the time (ZoeDepth and BEiT: tens of seconds).

The trace depends only on the network (its weights and configuration), the sample inputs'
shapes (their values come from a fixed seed) and the export options, so each distinct trace is made
once; a repeated export gets its own copy of the traced graph, and everything after the trace runs
for real every time.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest


def trace_key(model: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """A digest of what a dynamo trace depends on: the zoo model it was built as, its modules,
    configuration and weights, the sample inputs' shapes and dtypes, and the exporter's options.
    Two twins never share a trace, even where their graphs would be equal."""
    import torch

    digest = hashlib.sha256()
    inner = getattr(model, "model", model)
    digest.update(f"{getattr(inner, '_depth_spec_name', None)} {inner!r}".encode())
    digest.update(f"{getattr(inner, 'config', None)!r}".encode())
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    sample = args[0] if args else ()
    sample = sample if isinstance(sample, tuple) else (sample,)
    digest.update(repr([(tuple(t.shape), str(t.dtype)) for t in sample]).encode())
    digest.update(repr(sorted((k, repr(v)) for k, v in kwargs.items())).encode())
    return digest.hexdigest()


@pytest.fixture(scope="session", autouse=True)
def shared_onnx_traces():
    """``torch.onnx.export`` (dynamo) remembered by :func:`trace_key` for the session; each call
    returns a fresh ``ONNXProgram`` (the package optimises and folds the program it gets in place)."""
    import torch
    from onnx_ir import serde

    real_export = torch.onnx.export
    traces: dict[str, tuple[Any, Any]] = {}

    def export(model: Any, *args: Any, **kwargs: Any) -> Any:
        if not kwargs.get("dynamo") or not isinstance(model, torch.nn.Module):
            return real_export(model, *args, **kwargs)
        key = trace_key(model, args, kwargs)
        if key not in traces:
            program = real_export(model, *args, **kwargs)
            traces[key] = (program.model_proto, program.exported_program)  # before any change
            return program
        proto, exported_program = traces[key]
        return torch.onnx.ONNXProgram(serde.deserialize_model(proto), exported_program)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.onnx, "export", export)
        yield traces
