"""`vilbert-lite` command line: a thin dispatcher; each command lives next to the code it runs.

Errors: a user error (`errors.UserError`, an argparse error, an OSError such as a missing file) is printed as one
line, `vilbert-lite <command>: error: <message>`, with exit status 2; other exceptions are bugs and keep their
traceback. `--debug` (anywhere on the line) or VILBERT_LITE_DEBUG=1 shows the traceback of user errors too.
Warnings from the package print as `vilbert-lite <command>: warning: <message>`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

from vilbert_lite.errors import UserError, debug_requested, one_line

# command -> "module:function"; each function takes argv (list[str]) and returns an exit code.
COMMANDS = {
    "extract": ("vilbert_lite.data.extract:cli", "extract region features from an image folder"),
    "pretrain": ("vilbert_lite.pretrain.run:cli", "pretrain ViLBERT (synthetic world or real captions)"),
    "finetune": ("vilbert_lite.tasks:cli", "fine-tune on a downstream task"),
    "ask": ("vilbert_lite.predict:cli", "ask a trained run about a new image (answer, rank captions, point)"),
    "vilt": (
        "vilbert_lite.vilt.pretrain:cli",
        "pretrain ViLT (patch or grid embeddings) on the synthetic world",
    ),
    "multitask": (
        "vilbert_lite.multitask.train:cli",
        "12-in-1: one model for every task group (round robin, DSG)",
    ),
    "bench": ("vilbert_lite.bench:cli", "benchmarks: model | extract | pretrain | retrieval | vilt"),
    "plan": (
        "vilbert_lite.repro.plan:cli",
        "the runs a table needs: keys, which have finished, time of the rest",
    ),
}
PACKAGE = Path(__file__).resolve().parent


@contextmanager
def _one_line_reports(command: str):
    """While a command runs: argparse errors raise UserError (instead of printing usage and exiting), and the
    package's warnings print as one `vilbert-lite <command>: warning: ...` line."""
    error, formatwarning = argparse.ArgumentParser.error, warnings.formatwarning

    def parser_error(parser, message):
        raise UserError(f"{message} (see `{parser.prog} --help`)")

    def format_warning(message, category, filename, lineno, line=None):
        if Path(filename).resolve().is_relative_to(PACKAGE):
            return f"vilbert-lite {command}: warning: {message}\n"
        return formatwarning(message, category, filename, lineno, line)

    argparse.ArgumentParser.error, warnings.formatwarning = parser_error, format_warning
    try:
        yield
    finally:
        argparse.ArgumentParser.error, warnings.formatwarning = error, formatwarning


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested(argv)
    argv = [a for a in argv if a != "--debug"]
    if not argv or argv[0] in ("-h", "--help"):
        out = sys.stdout if argv else sys.stderr
        print("usage: vilbert-lite COMMAND [options] [--debug]\n\ncommands:", file=out)
        for name, (_, help_) in COMMANDS.items():
            print(f"  {name:<10} {help_}", file=out)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"vilbert-lite: error: unknown command {name!r}; valid commands: {', '.join(COMMANDS)}",
              file=sys.stderr)  # fmt: skip
        return 2
    module, func = COMMANDS[name][0].split(":")
    try:
        with _one_line_reports(name):
            return int(getattr(importlib.import_module(module), func)(rest) or 0)
    except (UserError, OSError) as e:
        if debug:
            raise
        print(f"vilbert-lite {name}: error: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"vilbert-lite {name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
