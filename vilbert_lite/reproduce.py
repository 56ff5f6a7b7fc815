"""`make reproduce`: execute the notebook suite with papermill at one profile and collect `reports/`.

Each notebook runs from `notebooks/` with `profile`, `seed` and `device` injected into its `parameters`
cell; the executed copy goes to `reports/notebooks/`. Heavy work inside the notebooks lives in run folders
under `runs/` that are reused, so a stopped reproduction resumes where it stopped.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Per cell, by profile: a table cell trains every run of its table (at `cpu` hours: 21 pretrainings and 138
# fine-tunings for Tables 1-3), so only a cell far beyond that is a hung kernel; None = no limit
CELL_TIMEOUT_S = {"smoke": 600, "cpu": 6 * 3600, "gpu": None}
SUITE = [
    "01_self_attention.ipynb",
    "02_co_attention.ipynb",
    "03_visual_tokens_and_regions.ipynb",
    "04_pretraining_objectives.ipynb",
    "05_finetuning.ipynb",
    "06_zero_shot_retrieval.ipynb",
    "07_baselines_table1.ipynb",
    "08_ablation_depth.ipynb",
    "09_ablation_data.ipynb",
    "10_multitask.ipynb",
    "11_vilt.ipynb",
]


def notebook_parameters(path: str | Path, reports_dir: str | Path, **params) -> dict:
    """papermill parameters for one notebook: `params`, plus `reports_dir` when the notebook declares it
    (notebooks 07-09), so that tables and figures land where the caller wants them."""
    import papermill as pm

    if "reports_dir" in pm.inspect_notebook(str(path)):
        params["reports_dir"] = str(reports_dir)
    return params


def run_suite(profile: str = "cpu", seed: int = 0, device: str = "auto", reports: Path | None = None,
              only: list[str] | None = None) -> list[dict]:  # fmt: skip
    """Execute every notebook of the suite that exists; returns one status dict per notebook."""
    import papermill as pm

    reports = Path(reports or ROOT / "reports")
    out_dir = reports / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    nb_dir = ROOT / "notebooks"
    status = []
    for i, name in enumerate(SUITE, 1):
        if only and not any(o in name for o in only):
            continue
        src = nb_dir / name
        if not src.exists():
            print(f"[{i}/{len(SUITE)}] {name}: not there yet (skipped)", flush=True)
            status.append({"notebook": name, "status": "missing"})
            continue
        print(f"[{i}/{len(SUITE)}] {name} (profile={profile}) ...", flush=True)
        t0 = time.time()
        params = notebook_parameters(src, reports, profile=profile, seed=seed, device=device)
        timeout = CELL_TIMEOUT_S.get(profile)
        for attempt in (1, 2):  # a kernel that stops answering (seen once, in a widget cell) is retried once;
            try:  # the retry is cheap: every finished run folder is reused
                pm.execute_notebook(
                    str(src), str(out_dir / name), parameters=params, cwd=str(nb_dir), progress_bar=False,
                    kernel_name="python3", execution_timeout=timeout,
                )  # fmt: skip
                break
            except TimeoutError:
                if attempt == 2:
                    raise
                print(f"[{i}/{len(SUITE)}] {name}: a cell ran over {timeout} s, retrying", flush=True)
        dt_s = time.time() - t0
        print(f"[{i}/{len(SUITE)}] {name}: done in {dt_s:.0f} s", flush=True)
        status.append({"notebook": name, "status": "ok", "seconds": round(dt_s, 1)})
    write_index(reports, profile, status)
    if (reports / "tables").is_dir():
        from vilbert_lite.reports import write_summary

        write_summary(reports, profile)
    return status


def write_index(reports: Path, profile: str, status: list[dict]) -> None:
    """reports/RUN.md: what was executed, when, on which machine (the tables' README is written by notebooks)."""
    lines = [
        "# Reproduction run",
        "",
        f"- command: `make reproduce PROFILE={profile}`",
        f"- date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "",
        "| notebook | status | seconds |",
        "|---|---|---|",
    ]
    lines += [f"| {s['notebook']} | {s['status']} | {s.get('seconds', '')} |" for s in status]
    (reports / "RUN.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu", choices=["smoke", "cpu", "gpu"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument(
        "--reports",
        default=None,
        help="default: reports/ for the cpu profile (committed), reports/<profile>/ for the others",
    )
    ap.add_argument("--only", nargs="*", help="substrings of notebook names to run")
    a = ap.parse_args(argv)
    reports = Path(a.reports) if a.reports else ROOT / "reports" / ("" if a.profile == "cpu" else a.profile)
    status = run_suite(a.profile, a.seed, a.device, reports, a.only)
    missing = [s["notebook"] for s in status if s["status"] == "missing"]
    if missing:
        print(f"{len(missing)} notebook(s) not written yet: {', '.join(missing)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
