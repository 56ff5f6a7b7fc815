"""Keep the course's frame in step with its order: a banner cell on top of every notebook and prev / next links
at the bottom, both generated from the suite's order (`vilbert_lite.repro.reproduce.SUITE`).

    python tools/nb_course.py            # rewrite the banner and navigation cells of every notebook in place
    python tools/nb_course.py --check    # exit 1 if any notebook's frame differs from what would be written

The banner says that the outputs stored in `notebooks/` come from the `smoke` profile (a tiny model run by the
tests), so that no stored number is read as a result, and links the executed `cpu` copy in `reports/notebooks/`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
BANNER, NAV = "course-banner", "course-nav"


def suite() -> list[str]:
    from vilbert_lite.repro.reproduce import SUITE

    return list(SUITE)


def title(path: Path) -> str:
    """`NN · Title` from the notebook's first heading."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown" and BANNER not in cell.metadata.get("tags", []):
            line = cell.source.strip().splitlines()[0]
            return line.lstrip("# ").strip()
    raise ValueError(f"{path.name}: no markdown heading")


def banner(name: str) -> str:
    return (
        f"> **The outputs stored in this file come from the `smoke` profile**: a tiny, barely trained model that "
        f"the tests run in seconds to check the code. They are not results. The copy executed at the `cpu` "
        f"profile, with every figure and the numbers the text discusses, is "
        f"[reports/notebooks/{name}](../reports/notebooks/{name}). The course page is "
        f"[notebooks/README.md](README.md)."
    )


def nav(names: list[str], i: int) -> str:
    parts = []
    if i > 0:
        parts.append(f"← previous: [{title(NB_DIR / names[i - 1])}]({names[i - 1]})")
    parts.append("[the course page](README.md)")
    if i + 1 < len(names):
        parts.append(f"next: [{title(NB_DIR / names[i + 1])}]({names[i + 1]}) →")
    return "---\n\n" + " · ".join(parts)


def framed(nb, name: str, names: list[str]):
    """The notebook with its banner first and its navigation last (replacing earlier ones)."""
    cells = [c for c in nb.cells if not {BANNER, NAV} & set(c.metadata.get("tags", []))]
    first = nbformat.v4.new_markdown_cell(banner(name), metadata={"tags": [BANNER]})
    last = nbformat.v4.new_markdown_cell(nav(names, names.index(name)), metadata={"tags": [NAV]})
    old = {t: c for c in nb.cells for t in c.metadata.get("tags", []) if t in (BANNER, NAV)}
    for cell, tag in ((first, BANNER), (last, NAV)):
        if tag in old:
            cell["id"] = old[tag]["id"]  # stable ids: a rerun changes nothing
    nb.cells = [first, *cells, last]
    return nb


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args(argv)
    names, bad = suite(), []
    for name in names:
        path = NB_DIR / name
        nb = nbformat.read(path, as_version=4)
        before = nbformat.writes(nb)
        after = nbformat.writes(framed(nb, name, names))
        if before != after:
            bad.append(name)
            if not a.check:
                path.write_text(after + "\n")
    if a.check and bad:
        print("course frame out of date (run python tools/nb_course.py): " + ", ".join(bad))
        return 1
    print(
        ("checked " if a.check else "framed ")
        + f"{len(names)} notebooks"
        + (f", rewrote {len(bad)}" if bad and not a.check else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
