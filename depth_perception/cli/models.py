"""``depth-perception models``: the monocular depth model zoo, one model a line."""

from __future__ import annotations

import argparse

from ..depth.zoo import backends, list_specs, metric_modes, missing_requirements


def add_models_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "models", help="list the monocular depth models",
        description="The model zoo: family, output (relative inverse depth, relative depth or metres), default input "
        "size and patch multiple, backends and licence; with -v also each backend's precisions and "
        "the metric modes that suit the output. '*_tiny' models are the same architectures with "
        "tiny random weights, for tests only.",
    )
    p.add_argument("--tiny", action="store_true", help="also list the *_tiny test twins")
    p.add_argument("--verbose", "-v", action="store_true",
                   help="description, normalisation, hub id, precisions per backend, metric modes")
    return p


def format_models(tiny: bool = False, verbose: bool = False) -> str:
    rows = [("NAME", "FAMILY", "OUTPUT", "INPUT", "PATCH", "BACKENDS", "LICENCE")]
    notes = []
    for s in list_specs(include_tiny=tiny):
        out = s.output if s.max_depth_m is None else f"{s.output} (<= {s.max_depth_m:g} m)"
        size = f"{s.input_size}" + (" fixed" if s.resize_mode == "fixed" else "")
        lic = s.licence
        missing = missing_requirements(s)
        if missing:
            lic += f"  [unavailable: pip install {' '.join(missing)}]"
        runs_on = backends(s)
        rows.append((s.name, s.family, out, size, str(s.patch_multiple), ",".join(runs_on), lic))
        if verbose:
            precisions = ", ".join(f"{b} ({' '.join(p)})" for b, p in runs_on.items())
            notes.append(f"{s.name}: {s.description}; mean {s.mean} std {s.std}; hub {s.hub_id or '-'}"
                         f"; backends {precisions}; metric.mode {' '.join(metric_modes(s))}")
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:-1], widths)) + "  " + r[-1] for r in rows]
    return "\n".join(lines + ([""] + notes if notes else []))


def cmd_models(args: argparse.Namespace) -> int:
    print(format_models(tiny=args.tiny, verbose=args.verbose))
    return 0
