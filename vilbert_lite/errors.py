"""User errors: bad input that the user can fix, reported by `vilbert-lite` as one line with exit status 2.

    raise UserError(f"{path}: questions[3] has no key 'image_id'")
    # -> vilbert-lite finetune: error: data/q.json: questions[3] has no key 'image_id'

The code that checks input (arguments, config keys, data files, images) raises `UserError`. It is a ValueError, so
library code and tests that catch ValueError keep working. `cli.main` prints a UserError, an argparse error and an
OSError (a missing file, a permission, a full disk) as `vilbert-lite <command>: error: <message>` and exits 2;
any other exception is a bug and keeps its traceback. `--debug` or VILBERT_LITE_DEBUG=1 shows the traceback of
user errors too.
"""

from __future__ import annotations

import json
import os

DEBUG_ENV = "VILBERT_LITE_DEBUG"


class UserError(ValueError):
    """Bad input from the user: the message says what, which file / field / item, and what was expected."""


def json_object_arg(text: str | None, name: str, example: str = '{"epochs": 2}') -> dict:
    """A command-line argument holding a JSON object (e.g. `--train '{"epochs": 2}'`) -> dict; {} when absent.
    Invalid JSON or another JSON type is a UserError naming the argument and showing `example`."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{name} is not valid JSON ({e}); expected an object such as '{example}'") from e
    if not isinstance(value, dict):
        raise UserError(f"{name} must be a JSON object such as '{example}', got {text!r}")
    return value


def debug_requested(argv: list[str]) -> bool:
    """True when `--debug` is among the arguments or VILBERT_LITE_DEBUG is set to anything but '' / '0'."""
    return "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def one_line(e: BaseException) -> str:
    """The message of an exception on one line (an OSError as `file: reason`, several lines joined by '; ')."""
    if isinstance(e, OSError) and e.filename and e.strerror:
        text = f"{e.filename}: {e.strerror}"
    else:
        text = str(e)
    return "; ".join(line.strip() for line in text.splitlines() if line.strip()) or type(e).__name__
