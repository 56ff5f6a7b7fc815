"""Keep the committed notebooks clean for review, with the reference outputs that nbval compares.

A committed notebook stores outputs only for the cells that `tests/test_notebooks.py` compares exactly: cells
whose outputs, in a smoke run, are plain text (stdout, text/plain, text/html) and that carry no
`nbval-ignore-output` / `nbval-skip` tag. Every other cell is stored without outputs and with
execution_count None, which nbval reads as "run it, do not compare". No images, widget state or errors.

    python tools/nb_clean.py notebooks/*.ipynb             # strip in place (outputs that are not references)
    python tools/nb_clean.py --record notebooks/0*.ipynb   # run at profile=smoke, keep the text outputs as references
    python tools/nb_clean.py --check notebooks/*.ipynb     # list problems, exit 1 if any (what the tests check)
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

import nbformat

MAX_OUTPUT_BYTES = 20_000  # per cell, stored outputs
TEXT_MIME = {"text/plain", "text/html"}
IGNORE_TAGS = {"nbval-ignore-output", "nbval-skip"}
PROFILES = ("smoke", "cpu", "gpu")
NOTEBOOK_KEYS = {"kernelspec", "language_info"}  # notebook metadata kept; widgets / papermill state dropped
CELL_KEYS = {"tags"}  # cell metadata kept


def _tags(cell) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []))


def comparable(cell) -> bool:
    """Whether a cell's outputs can serve as an exact nbval reference: text only, not tagged to be ignored."""
    if cell.cell_type != "code" or _tags(cell) & IGNORE_TAGS or not cell.get("outputs"):
        return False
    for out in cell.outputs:
        if out.output_type == "stream" and out.name != "stdout":
            return False
        if out.output_type in ("display_data", "execute_result") and set(out.get("data", {})) - TEXT_MIME:
            return False
        if out.output_type not in ("stream", "display_data", "execute_result"):
            return False
    return len(json.dumps(cell.outputs)) <= MAX_OUTPUT_BYTES


def clean(nb) -> nbformat.NotebookNode:
    """Strip everything that is not a reference output; returns the notebook (modified in place)."""
    nb.metadata = {k: v for k, v in nb.metadata.items() if k in NOTEBOOK_KEYS}
    for cell in nb.cells:
        cell.metadata = {k: v for k, v in cell.metadata.items() if k in CELL_KEYS}
        if cell.cell_type != "code":
            continue
        if comparable(cell):
            for out in cell.outputs:
                if out.output_type != "stream":
                    out["metadata"] = {}
        else:
            cell.outputs, cell.execution_count = [], None
    return nb


def parameters_problems(nb) -> list[str]:
    """The `parameters` cell exists once and assigns profile (one of PROFILES), seed and device."""
    cells = [c for c in nb.cells if "parameters" in _tags(c)]
    if len(cells) != 1:
        return [f"expected exactly one cell tagged 'parameters', found {len(cells)}"]
    values = {}
    for node in ast.parse(cells[0].source).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            try:
                values[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                values[node.targets[0].id] = None
    probs = [
        f"parameters cell does not define {k!r}" for k in ("profile", "seed", "device") if k not in values
    ]
    if "profile" in values and values["profile"] not in PROFILES:
        probs.append(f"parameters: profile = {values['profile']!r} is not one of {PROFILES}")
    return probs


def problems(nb) -> list[str]:
    """Everything that keeps a committed notebook from being clean (empty list = clean)."""
    probs = parameters_problems(nb)
    extra = set(nb.metadata) - NOTEBOOK_KEYS
    if extra:
        probs.append(f"notebook metadata {sorted(extra)} (widget or run state) should be stripped")
    for i, cell in enumerate(nb.cells):
        where = f"cell {i}"
        if cell.cell_type != "code":
            continue
        if "widgets" in cell.metadata or "papermill" in cell.metadata or "execution" in cell.metadata:
            probs.append(f"{where}: run metadata {sorted(set(cell.metadata) - CELL_KEYS)} should be stripped")
        for out in cell.outputs:
            data = out.get("data", {})
            if out.output_type == "error":
                probs.append(f"{where}: stored error output {out.get('ename')}")
            if any(m.startswith("image/") for m in data):
                probs.append(f"{where}: stored image output")
            if any("widget" in m for m in data):
                probs.append(f"{where}: stored widget output")
        if cell.outputs and not comparable(cell):
            probs.append(
                f"{where}: outputs that nbval cannot compare exactly (stderr, images, tags, or too large)"
            )
        if len(json.dumps(cell.outputs)) > MAX_OUTPUT_BYTES:
            probs.append(f"{where}: outputs larger than {MAX_OUTPUT_BYTES} bytes")
        if cell.outputs and cell.execution_count is None:
            probs.append(f"{where}: outputs without an execution_count (nbval would refuse them)")
    return probs


def record(path: Path, parameters: dict | None = None, kernel: str = "python3") -> float:
    """Run the notebook with papermill at profile=smoke (cwd = its folder); keep its text outputs as references."""
    import papermill as pm

    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        from vilbert_lite.repro.reproduce import notebook_parameters

        # smoke tables never overwrite reports/; notebooks 07-09 train theirs (results="runs"), as the tests run them
        declared = notebook_parameters(path, Path(tmp) / "reports", {"results": "runs"}, profile="smoke")
        params = {**declared, **(parameters or {})}
        done = pm.execute_notebook(
            str(path), str(Path(tmp) / path.name), parameters=params,
            cwd=str(path.parent), kernel_name=kernel, progress_bar=False,
            execution_timeout=300,  # a cell that hangs (a lost kernel message, seen once in a widget cell) fails
        )  # fmt: skip
        seconds = time.perf_counter() - t0
    ran = [c for c in done.cells if "injected-parameters" not in _tags(c)]
    if len(ran) != len(nb.cells):
        raise RuntimeError(f"{path}: executed notebook has {len(ran)} cells, expected {len(nb.cells)}")
    for cell, r in zip(nb.cells, ran):
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = copy.deepcopy(r.outputs), r.execution_count
    nbformat.write(clean(nb), path)
    return seconds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebooks", nargs="+", type=Path)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="report problems, change nothing")
    mode.add_argument(
        "--record", action="store_true", help="run at profile=smoke and keep the reference outputs"
    )
    args = ap.parse_args(argv)
    bad = 0
    for path in args.notebooks:
        if args.check:
            for p in problems(nbformat.read(path, as_version=4)):
                print(f"{path}: {p}")
                bad += 1
        elif args.record:
            print(f"{path}: smoke run in {record(path):.1f} s, reference outputs recorded")
        else:
            nbformat.write(clean(nbformat.read(path, as_version=4)), path)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
