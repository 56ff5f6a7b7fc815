"""`vilbert-lite` command line: a thin dispatcher; each command lives next to the code it runs."""

from __future__ import annotations

import importlib
import sys

# command -> "module:function"; each function takes argv (list[str]) and returns an exit code.
COMMANDS = {
    "extract": ("vilbert_lite.data.regions:cli", "extract region features from an image folder"),
    "pretrain": ("vilbert_lite.pretrain:cli", "pretrain ViLBERT (synthetic world or real captions)"),
    "finetune": ("vilbert_lite.tasks:cli", "fine-tune on a downstream task"),
    "bench": ("vilbert_lite.bench:cli", "benchmarks: model | extract | pretrain | retrieval"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: vilbert-lite COMMAND [options]\n\ncommands:")
        for name, (_, help_) in COMMANDS.items():
            print(f"  {name:<10} {help_}")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(
            f"vilbert-lite: unknown command {name!r}; valid commands: {', '.join(COMMANDS)}", file=sys.stderr
        )
        return 2
    module, func = COMMANDS[name][0].split(":")
    return int(getattr(importlib.import_module(module), func)(rest) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
