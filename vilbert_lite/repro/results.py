"""Where a table's numbers come from: `results="runs"` trains them (the run folders), `results="reports"` reads
the per-seed rows a run wrote before (`reports/tables/<table>_long.csv`, the committed ones by default) and gives
them back exactly as the training path returned them, so that every summary, figure and verdict drawn from them
is the same. Shared by Tables 1-3 (`experiments`), 12-in-1 (`multitask_table`) and ViLT (`vilt_table`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from vilbert_lite.runs import project_root

RESULTS = ("reports", "runs")  # the committed files, or the run folders


def committed_reports() -> Path:
    """The project's committed results: `reports/` at the project root (its tables are the `cpu` profile's)."""
    return project_root() / "reports"


def results_dir(results_from: str | Path | None = None) -> Path:
    """The reports folder that results="reports" reads: `results_from`, else the committed reports/."""
    return Path(results_from) if results_from is not None else committed_reports()


def check_results(results: str) -> None:
    if results not in RESULTS:
        raise ValueError(f"results={results!r}: choose one of {RESULTS}")


def shown(path: str | Path) -> str:
    """`path` relative to the project root when it lies inside it (reports/tables/...), else as given."""
    try:
        return str(Path(path).resolve().relative_to(project_root()))
    except ValueError:
        return str(path)


def folder_profile(folder: Path) -> str | None:
    """The profile whose results a reports folder holds, as `reports.reports_dir_for` lays them out: the committed
    `reports/` is cpu's, `reports/smoke` and `reports/gpu` theirs; None for any other folder."""
    if folder.resolve() == committed_reports().resolve():
        return "cpu"
    return folder.name if folder.name in ("smoke", "gpu") else None


def stored_rows(src: Path, profile: str, seeds, cost: str, read: Callable[[Path], pd.DataFrame] = pd.read_csv,
                ) -> pd.DataFrame:  # fmt: skip
    """The long rows stored in `src` (read with `read`, which restores the training path's dtypes), as stored,
    with one line saying where they come from, and a note when they hold other seeds or another profile than
    asked for. cost: what results='runs' would take instead (named when the file is missing)."""
    if not src.is_file():
        raise FileNotFoundError(
            f"{shown(src)}: no stored results; set results='runs' to train them ({cost}), or point results_from "
            "at a folder whose tables/ holds them"
        )
    long = read(src)
    held = sorted(int(s) for s in long.seed.unique())
    committed = src.resolve().is_relative_to(committed_reports().resolve())
    print(f"{shown(src)}: {len(long)} numbers ({long.row.nunique()} rows x seeds {held}), "
          f"{'committed' if committed else 'stored'} results, nothing trained")  # fmt: skip
    holder = folder_profile(src.parent.parent)
    if held != sorted(seeds) or holder not in (None, profile):
        holds = f"profile {holder}'s" if holder else "its"
        print(f"  note: the file holds {holds} numbers for seeds {held}; you asked for profile {profile}, seeds "
              f"{sorted(seeds)}: shown as stored (results='runs' trains the ones asked for)")  # fmt: skip
    return long


def write_rows(long: pd.DataFrame, csv: str | Path | None, src: Path | None = None) -> None:
    """Write the long rows to `csv` (when given, and not the file they were read from)."""
    if csv is not None and (src is None or Path(csv).resolve() != Path(src).resolve()):
        Path(csv).parent.mkdir(parents=True, exist_ok=True)
        long.to_csv(csv, index=False)
