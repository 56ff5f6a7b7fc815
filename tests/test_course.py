"""The course around the notebooks: its frame (banner, prev / next links) follows the suite's order, every
parameter a papermill user sets is seen by papermill, the course page lists every notebook with its times, the
product's text speaks of the project and the papers only, and an executed copy says what it is."""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import nbformat
import pytest

from vilbert_lite.repro import reproduce

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = [ROOT / "notebooks" / n for n in reproduce.SUITE]
PROCESS_WORDS = re.compile(
    r"\b(session|issues?|REFERENCE(\.md| §)|the lecture|an earlier draw|design[- ]log,? sections? \d+)\b",
    re.I,
)


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_notebook_of_the_suite_exists_and_has_its_frame():
    assert all(p.exists() for p in NOTEBOOKS), [p.name for p in NOTEBOOKS if not p.exists()]
    assert _tool("nb_course").main(["--check"]) == 0, "run python tools/nb_course.py"
    first = nbformat.read(NOTEBOOKS[0], as_version=4)
    assert "smoke" in first.cells[0].source and "../reports/notebooks/" in first.cells[0].source
    assert "next:" in first.cells[-1].source and "previous:" not in first.cells[-1].source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_papermill_sees_every_parameter(path):
    """papermill silently drops a parameter line it cannot parse (e.g. a comment holding `x="y"`): then `-p x`
    does nothing. Every name the parameters cell assigns must be one papermill reports."""
    import papermill as pm

    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assigned = {n.targets[0].id for n in ast.parse(cell.source).body if isinstance(n, ast.Assign)}
    assert assigned <= set(pm.inspect_notebook(str(path))), assigned - set(pm.inspect_notebook(str(path)))


def test_the_course_page_lists_every_notebook_with_its_times_and_a_glossary():
    page = (ROOT / "notebooks" / "README.md").read_text()
    for name in reproduce.SUITE:
        row = next((line for line in page.splitlines() if line.startswith(f"| [`{name}`]")), None)
        assert row is not None, f"{name} has no row in notebooks/README.md"
        assert row.count("|") >= 6, f"{name}: the row needs its smoke / cpu time columns"
    assert "## Glossary" in page
    for term in ("ViLBERT†", "region features", "co-attention", "RoIAlign", "alignment", "95 % interval"):
        assert term in page, term


def test_the_product_speaks_of_itself_and_the_papers():
    texts = {p: p.read_text() for p in [*NOTEBOOKS, ROOT / "README.md", ROOT / "notebooks" / "README.md"]}
    texts |= {p: p.read_text() for p in (ROOT / "vilbert_lite").rglob("*.py")}
    found = [
        f"{p.relative_to(ROOT)}: {m.group(0)!r}" for p, t in texts.items() for m in PROCESS_WORDS.finditer(t)
    ]
    assert not found, found


def test_an_executed_copy_says_how_it_was_made(tmp_path):
    src = NOTEBOOKS[7]  # a reproduction notebook (07)
    copy = tmp_path / src.name
    copy.write_text(src.read_text())
    entry = {"profile": "cpu", "finished": "2026-12-07 12:00", "seconds": 18.0, "params": {"results": "reports"},
             "trained": {"pretrain": 0, "finetune": 0, "other": 0}}  # fmt: skip
    reproduce.stamp_banner(copy, entry)
    banner = nbformat.read(copy, as_version=4).cells[0].source
    assert (
        "Executed at the `cpu` profile" in banner
        and "nothing was trained" in banner
        and "smoke" not in banner
    )
    reproduce.stamp_banner(copy, {**entry, "params": {}, "trained": {"pretrain": 1, "finetune": 5}})
    banner = nbformat.read(copy, as_version=4).cells[0].source
    assert "1 pretraining, 5 fine-tuning" in banner


def test_executed_copies_keep_their_figures_small(tmp_path):
    """compact_images redraws a large PNG at most max_side pixels and with a palette, drops widget state, and
    keeps every figure (the committed executed copies must stay a few MB together)."""
    import base64
    import io

    import numpy as np
    from matplotlib.figure import Figure
    from PIL import Image

    fig = Figure(figsize=(20, 10), dpi=100)
    ax = fig.subplots()
    ax.imshow(np.random.default_rng(0).random((64, 64)), cmap="viridis")
    ax.plot(np.sin(np.linspace(0, 10, 200)) * 30 + 32, lw=3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    png = base64.b64encode(buf.getvalue()).decode()
    v4 = nbformat.v4
    out = v4.new_output("display_data", data={"image/png": png, "text/plain": "<Figure>"})
    nb = v4.new_notebook(cells=[v4.new_code_cell("fig", outputs=[out])], metadata={"widgets": {"state": {}}})
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    saved = reproduce.compact_images(path, max_side=800)
    after = nbformat.read(path, as_version=4)
    img = Image.open(io.BytesIO(base64.b64decode(after.cells[0].outputs[0].data["image/png"])))
    assert saved > 0 and max(img.size) == 800 and img.size[0] == 2 * img.size[1]
    assert "widgets" not in after.metadata and after.cells[0].outputs[0].data["text/plain"] == "<Figure>"
