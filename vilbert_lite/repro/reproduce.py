"""`make reproduce`: execute the notebook suite with papermill at one profile and collect `reports/`.

Each notebook runs from `notebooks/` with `profile`, `seed` and `device` injected into its `parameters`
cell, and `results` ("runs" by default: train what is missing) into those that declare it (the tables of notebooks
07-09; `--results reports` reads them from the committed per-seed numbers in seconds instead); the executed copy
goes to `reports/notebooks/`. Heavy work inside the notebooks lives in run folders
under `runs/` that are reused, so a stopped reproduction resumes where it stopped.

Every notebook's outcome is appended to `reports/run_log.jsonl` (when it finished, its seconds, and how many
run folders it trained: a notebook that reused finished runs took less than it would from a fresh clone), and
`reports/RUN.md` shows the latest entry of each notebook, so that `--only` and resumed runs keep the others.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import io
import json
import os
import platform
import sys
import time
from pathlib import Path

from vilbert_lite.multitask.train import METRICS_FILE
from vilbert_lite.repro.reports import reports_dir_for, write_summary
from vilbert_lite.runs import DONE, runs_root

ROOT = Path(__file__).resolve().parents[2]  # the checkout: notebooks/ and reports/
# Per cell, by profile: a table cell trains every run of its table (at `cpu` hours: Table 2 alone is projected
# at 4.3 h with two workers, reports/bench/reproduce_budget.json), so only a cell far beyond that is a hung
# kernel; None = no limit
CELL_TIMEOUT_S = {"smoke": 600, "cpu": 12 * 3600, "gpu": None}
SUITE = [
    "01_self_attention.ipynb",
    "02_co_attention.ipynb",
    "03_visual_tokens_and_regions.ipynb",
    "04_pretraining_objectives.ipynb",
    "04b_what_pretraining_learned.ipynb",
    "05_finetuning.ipynb",
    "06_zero_shot_retrieval.ipynb",
    "07_baselines_table1.ipynb",
    "08_ablation_depth.ipynb",
    "09_ablation_data.ipynb",
    "10_multitask.ipynb",
    "11_vilt.ipynb",
    "11b_vilt_experiments.ipynb",
    "12_real_data.ipynb",
]


def notebook_parameters(
    path: str | Path, reports_dir: str | Path, extra: dict | None = None, **params
) -> dict:
    """papermill parameters for one notebook: `params`, plus `reports_dir` and those of `extra` that the notebook
    declares (`reports_dir`: notebooks 07-11, so that tables and figures land where the caller wants them)."""
    import papermill as pm  # optional (notebooks extra): only running notebooks needs it

    declared = pm.inspect_notebook(str(path))
    params.update({k: v for k, v in (extra or {}).items() if k in declared})
    if "reports_dir" in declared:
        params["reports_dir"] = str(reports_dir)
    return params


def finished_runs(root: Path) -> set[str]:
    """Finished run folders under `root`, relative to it: "pretrain-…", "finetune/vqa-…" (a DONE marker, written
    by `train.engine.train`), "multitask/…" (its metrics.json, written last by `multitask.train.multitask`)."""
    patterns = (f"*/{DONE}", f"*/*/{DONE}", f"multitask/*/{METRICS_FILE}")
    return {str(p.parent.relative_to(root)) for pattern in patterns for p in root.glob(pattern)}


def trained_counts(new: set[str]) -> dict:
    """How many of the run folders in `new` are pretraining runs (top level), fine-tuning runs (finetune/) and
    others (multi-task, curves): {"pretrain": n, "finetune": m, "other": k}."""
    n_fine = sum(name.startswith("finetune/") for name in new)
    n_pre = sum("/" not in name for name in new)
    return {"pretrain": n_pre, "finetune": n_fine, "other": len(new) - n_pre - n_fine}


def parse_param(text: str) -> tuple[str, object]:
    """`NAME=VALUE` from the command line -> (name, value): VALUE read as JSON (2, null, [0, 1], "x"), else kept
    as a string."""
    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise ValueError(f"parameter {text!r}: expected NAME=VALUE, e.g. n_seeds=2")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def run_suite(profile: str = "cpu", seed: int = 0, device: str = "auto", reports: Path | None = None,
              only: list[str] | None = None, params: dict | None = None, results: str = "runs") -> list[dict]:  # fmt: skip
    """Execute every notebook of the suite that exists; returns one status dict per notebook. `params` are
    extra papermill parameters, given only to the notebooks whose `parameters` cell declares them; so is
    `results` ("runs": train what is missing, "reports": read the committed per-seed results, notebooks 07-09),
    which the run log records when it is not "runs"."""
    import papermill as pm  # optional (notebooks extra): only running notebooks needs it

    reports = reports_dir_for(profile, reports, base=ROOT / "reports")  # smoke / gpu: reports/<profile>/
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
        t0, before = time.time(), finished_runs(runs_root())
        nb_params = notebook_parameters(src, reports, {"results": results, **(params or {})}, profile=profile,
                                        seed=seed, device=device)  # fmt: skip
        extra = {k: nb_params[k] for k in params or {} if k in nb_params}
        # a table read from reports/, not trained: RUN.md says so
        if nb_params.get("results", "runs") != "runs":
            extra["results"] = nb_params["results"]
        timeout = CELL_TIMEOUT_S.get(profile)
        for attempt in (1, 2):  # a kernel that stops answering (seen once, in a widget cell) is retried once;
            try:  # the retry is cheap: every finished run folder is reused
                pm.execute_notebook(
                    str(src), str(out_dir / name), parameters=nb_params, cwd=str(nb_dir), progress_bar=False,
                    kernel_name="python3", execution_timeout=timeout,
                )  # fmt: skip
                break
            except TimeoutError:
                if attempt == 2:
                    raise
                print(f"[{i}/{len(SUITE)}] {name}: a cell ran over {timeout} s, retrying", flush=True)
        dt_s = time.time() - t0
        print(f"[{i}/{len(SUITE)}] {name}: done in {dt_s:.0f} s", flush=True)
        entry = {"notebook": name, "status": "ok", "seconds": round(dt_s, 1), "profile": profile, "seed": seed,
                 "finished": f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M}",
                 "trained": trained_counts(finished_runs(runs_root()) - before)}  # fmt: skip
        if extra:
            entry["params"] = extra
        if (out_dir / name).is_file():
            stamp_banner(out_dir / name, entry)
            compact_images(out_dir / name)
        status.append(entry)
        append_log(reports, entry)
    write_index(reports, profile)
    if (reports / "tables").is_dir():
        write_summary(reports, profile)
    return status


def stamp_banner(path: Path, entry: dict) -> None:
    """The executed copy says what it is: the source notebook's banner (its stored outputs are the `smoke`
    profile's) becomes a line with the profile, when and how long it ran, and whether it trained or read the
    committed per-seed results."""
    import nbformat  # the notebooks extra, as papermill

    nb = nbformat.read(path, as_version=4)
    banner = next((c for c in nb.cells if "course-banner" in c.metadata.get("tags", [])), None)
    if banner is None:
        return
    read = (entry.get("params") or {}).get("results") == "reports"
    t = entry.get("trained") or {}
    how = (
        "its tables and figures are drawn from the committed per-seed results (`reports/tables/*_long.csv`, "
        '`results="reports"`): nothing was trained for this copy; `make reproduce` trains them'
        if read
        else f"run folders trained by this execution: {t.get('pretrain', 0)} pretraining, "
        f"{t.get('finetune', 0)} fine-tuning (finished runs under `runs/` are reused)"
    )
    banner.source = (
        f"> **Executed at the `{entry['profile']}` profile** on {entry['finished']} UTC in {entry['seconds']:,.0f} s "
        f"on {os.cpu_count()} CPU cores; {how}. The lesson itself, with its parameters, is "
        f"[notebooks/{path.name}](../../notebooks/{path.name})."
    )
    nbformat.write(nb, path)


def compact_images(path: Path, max_side: int = 1400) -> int:
    """Keep the committed executed copies small (all of them together a few MB): every PNG output is redrawn
    at most `max_side` pixels wide or high and stored with a 256-colour palette when that is smaller (figures of
    flat colours lose nothing visible), and the widgets' saved state (which GitHub does not render) is dropped.
    -> bytes saved."""
    import nbformat  # the notebooks extra, as papermill
    from PIL import Image  # matplotlib's image library

    before = path.stat().st_size
    nb = nbformat.read(path, as_version=4)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if "image/png" not in data:
                continue
            raw = base64.b64decode(data["image/png"])
            img = Image.open(io.BytesIO(raw))
            if max(img.size) > max_side:
                scale = max_side / max(img.size)
                img = img.resize((round(img.width * scale), round(img.height * scale)), Image.LANCZOS)
            small = io.BytesIO()
            img.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(
                small, "PNG", optimize=True
            )
            if small.tell() < len(raw):
                data["image/png"] = base64.b64encode(small.getvalue()).decode()
                meta = out.setdefault("metadata", {}).setdefault("image/png", {})
                if isinstance(meta, dict) and {"width", "height"} & set(meta):
                    meta.pop("width", None), meta.pop("height", None)
    nbformat.write(nb, path)
    return before - path.stat().st_size


def append_log(reports: Path, entry: dict) -> None:
    with open(reports / "run_log.jsonl", "a") as f:
        f.write(json.dumps(entry) + "\n")


def write_index(reports: Path, profile: str) -> None:
    """reports/RUN.md from reports/run_log.jsonl: the latest entry of each notebook of `profile` (the tables'
    README is written by the notebooks); a notebook run with results="reports" (read, not trained) has a row of
    its own, so it never hides the time its training took."""
    log = reports / "run_log.jsonl"
    latest = {}
    for line in log.read_text().splitlines() if log.exists() else []:
        e = json.loads(line)
        if e.get("profile") == profile:
            latest[(e["notebook"], (e.get("params") or {}).get("results", "runs"))] = e
    lines = [
        "# Reproduction run",
        "",
        f"- command: `make reproduce PROFILE={profile}` (resumable: finished run folders under `runs/` are reused)",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "- each notebook's latest execution (all of them: `reports/run_log.jsonl`); *runs trained* counts the",
        "  pretraining / fine-tuning run folders it finished itself, so a notebook that reused earlier runs took",
        "  less than from a fresh clone. What the runs behind each table took is in `reports/README.md`.",
        "",
        "| notebook | status | seconds | finished (UTC) | runs trained (pretraining / fine-tuning) |",
        "|---|---|---|---|---|",
    ]
    for key in [(name, mode) for name in SUITE for mode in ("runs", "reports")]:
        if key in latest:
            name, e = key[0], latest[key]
            tr = e.get("trained") or {}
            trained = f"{tr['pretrain']} / {tr['finetune']}" if tr else "not recorded"
            trained += f" (+ {tr['other']} other)" if tr.get("other") else ""
            params = "".join(f", {k}={json.dumps(v)}" for k, v in (e.get("params") or {}).items())
            lines.append(
                f"| {name}{params} | {e['status']} | {e.get('seconds', '')} | {e.get('finished', '')} | {trained} |"
            )
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
    ap.add_argument("--results", default="runs", choices=["runs", "reports"],
                    help="notebooks 07-11b: train the tables (runs, resumable) or read them from the committed "
                    "per-seed results in seconds (reports)")  # fmt: skip
    ap.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                    help="an extra parameter for the notebooks that declare it, e.g. -p n_seeds=2 (VALUE as JSON)")  # fmt: skip
    a = ap.parse_args(argv)
    try:
        params = dict(parse_param(t) for t in a.param)
    except ValueError as e:
        ap.error(str(e))

    reports = reports_dir_for(a.profile, a.reports, ROOT / "reports")
    status = run_suite(a.profile, a.seed, a.device, reports, a.only, params, a.results)
    missing = [s["notebook"] for s in status if s["status"] == "missing"]
    if missing:
        print(f"{len(missing)} notebook(s) not written yet: {', '.join(missing)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
