"""The command's error contract: one line on stderr; exit status 2 for what the user can fix (bad
input, options, files, a missing dependency), 1 for internal errors."""

from __future__ import annotations

import pytest

from depth_perception import cli

# the shape of transformers' report for a model whose extra package is missing
DEPENDENCY_REPORT = ("\nDPTForDepthEstimation requires the timm library but it was not found in your "
                     "environment. You can install it with pip:\n`pip install timm`. Please note "
                     "that you may need to restart your runtime after installation.\n" + "\n" * 80)


@pytest.mark.parametrize("error, status, words", [
    (ImportError(DEPENDENCY_REPORT), 2, ["missing or broken dependency", "requires the timm library"]),
    (FileNotFoundError("in.bag: no such bag"), 2, ["in.bag: no such bag"]),
    (cli.CliError("--set expects NAME=VALUE"), 2, ["--set expects NAME=VALUE"]),
    (RuntimeError("CUDA error: device-side assert\nlong\ntrace"), 1,
     ["RuntimeError: CUDA error: device-side assert", "rerun with --debug"]),
])
def test_every_error_is_one_line_with_the_status_that_says_whose_it_is(monkeypatch, capsys, error,
                                                                       status, words):
    def failing(_args):
        raise error

    monkeypatch.setitem(cli.COMMANDS, "models", failing)
    assert cli.main(["models"]) == status
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    for word in words:
        assert word in err


def test_a_long_message_is_cut():
    line = cli.error_line(ValueError("x" * 5000))
    assert len(line) == 400 and line.endswith("...")
