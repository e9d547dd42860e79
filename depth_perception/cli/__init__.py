"""The `depth-perception` command. Errors are one readable line on stderr and a non-zero exit.

One module per group of sub-commands, each with its parser and its handler over library functions:
``predict``, ``demo``, ``bag``, ``models`` (the zoo), ``export`` (``export``, ``export-sam``),
``engine`` (``build-engine``) and ``training`` (``train``, ``distill``). They are imported when the
parser is built, and nothing heavy (torch, TensorRT, ...) before a command runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable

from .. import __version__
from .errors import CliError

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    from . import bag, demo, engine, export, models, predict, training

    parser = argparse.ArgumentParser(
        prog="depth-perception",
        description="Metric depth and point clouds of graspable objects from a colour camera.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    predict.add_predict_parser(sub)
    demo.add_demo_parser(sub)
    bag.add_bag_parser(sub)
    export.add_export_sam_parser(sub)
    training.add_train_parser(sub)
    training.add_distill_parser(sub)
    models.add_models_parser(sub)
    export.add_export_parser(sub)
    engine.add_build_engine_parser(sub)
    return parser


#: the commands that run the pipeline frame after frame (see :mod:`depth_perception.threads`)
FRAME_COMMANDS = ("predict", "demo", "bag")


def _lazy(module: str, name: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        import importlib

        return getattr(importlib.import_module(module, __package__), name)(args)

    return run


COMMANDS = {
    "predict": _lazy(".predict", "cmd_predict"),
    "demo": _lazy(".demo", "cmd_demo"),
    "bag": _lazy(".bag", "cmd_bag"),
    "export-sam": _lazy(".export", "cmd_export_sam"),
    "models": _lazy(".models", "cmd_models"),
    "export": _lazy(".export", "cmd_export"),
    "build-engine": _lazy(".engine", "cmd_build_engine"),
    "train": _lazy(".training", "cmd_train"),
    "distill": _lazy(".training", "cmd_distill"),
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command in FRAME_COMMANDS:
            from ..threads import limit_blas_threads

            limit_blas_threads()
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("depth-perception: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `depth-perception models | head`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # noqa: BLE001 - the CLI's contract is one line, not a traceback
        if args.debug or os.environ.get("DEPTH_PERCEPTION_DEBUG"):
            raise
        print(f"depth-perception {args.command}: error: {error_line(exc)}", file=sys.stderr)
        return EXIT_USAGE if user_error(exc) else 1


def user_error(exc: BaseException) -> bool:
    """Whether the user can fix ``exc`` (bad input, option, file or environment: exit status 2)
    rather than it being an internal error (exit status 1)."""
    return isinstance(exc, (CliError, ValueError, OSError, ImportError))


def error_line(exc: BaseException, limit: int = 400) -> str:
    """``exc`` as one line: its first non-empty line (a dependency report from transformers runs
    to dozens), prefixed with the type for internal errors and for missing dependencies."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    if len(text) > limit:
        text = text[:limit - 3] + "..."
    if isinstance(exc, ImportError):
        return f"missing or broken dependency: {text}"
    if not user_error(exc):
        return f"{type(exc).__name__}: {text} (rerun with --debug for details)"
    return text


__all__ = ["COMMANDS", "EXIT_USAGE", "CliError", "build_parser", "error_line", "main", "user_error"]
