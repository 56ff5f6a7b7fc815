"""The cells of the paper's Tables 1-3 as runs: each cell pretrains (or not) and fine-tunes every task.

A cell returns "long" rows {table, row, seed, column, value (percent)} that `reports.summarize` and
`reports.claims` read. Runs are folders keyed by their config, so a cell computed once (for Table 1, say)
is reused by every other table that needs it: ViLBERT at full depth and 100% of the corpus is the same run
in all three tables, and ViLBERT† is Table 3's 0% row.
"""

from __future__ import annotations

import json
import math
from concurrent.futures import Executor
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from vilbert_lite.data.world import make_world
from vilbert_lite.model.config import ViLBertConfig, co_attention_ids
from vilbert_lite.pretrain.data import synthetic_data
from vilbert_lite.pretrain.run import pretrain
from vilbert_lite.profiles import get_profile
from vilbert_lite.repro.results import check_results, results_dir, stored_rows, write_rows
from vilbert_lite.repro.runner import run_jobs
from vilbert_lite.runs import runs_root
from vilbert_lite.tasks import finetune
from vilbert_lite.tasks.common import chance_of, world_features

TASKS = ("vqa", "vcr", "refer", "retrieval", "zeroshot", "nlvr")
# (task, metric in metrics.json) -> column of paper.COLUMNS (plus nlvr_accuracy, which the paper lacks)
COLUMN_OF = {
    ("vqa", "vqa_accuracy"): "vqa_accuracy", ("vcr", "q2a"): "q2a", ("vcr", "qa2r"): "qa2r",
    ("vcr", "q2ar"): "q2ar", ("refer", "refer_accuracy"): "refer_accuracy", ("retrieval", "r@1"): "r@1",
    ("retrieval", "r@5"): "r@5", ("retrieval", "r@10"): "r@10", ("zeroshot", "r@1"): "zs_r@1",
    ("zeroshot", "r@5"): "zs_r@5", ("zeroshot", "r@10"): "zs_r@10", ("nlvr", "nlvr_accuracy"): "nlvr_accuracy",
}  # fmt: skip
SINGLE_STREAM_TASKS = ("vqa", "vcr", "refer", "nlvr")  # the paper reports no retrieval for the single stream
# the tasks of the paper's Tables 2 and 3 (NLVR-style is ours, reported in Table 1 only: it saves ~70 s a cell)
ABLATION_TASKS = ("vqa", "vcr", "refer", "retrieval", "zeroshot")


def depth_overrides(profile: str) -> dict[int, dict]:
    """Table 2's 2/4/6/8 co-attention layers scaled to the profile's model: the official pattern (visual layers =
    co-attention layers, co-attention before the last n text layers) with n = depth * text layers / 12."""
    base = ViLBertConfig.preset(get_profile(profile).model_preset)
    out = {}
    for depth in (2, 4, 6, 8):
        n = max(1, min(base.num_hidden_layers, round(depth * base.num_hidden_layers / 12)))
        v, t = co_attention_ids(n, base.num_hidden_layers)
        out[depth] = {"v_num_hidden_layers": n, "v_biattention_id": v, "t_biattention_id": t}
    return out


def run_cell(table: str, row, profile: str, seed: int, *, pretrained: bool = True, model_kind: str = "vilbert",
             config_overrides: dict | None = None, fraction: float = 1.0, tasks=TASKS, progress: bool = False,
             root: str | Path | None = None, blank_images: bool = False, device: str = "auto") -> list[dict]:  # fmt: skip
    """Pretrain (unless not `pretrained`) and fine-tune `tasks` for one table cell and seed -> long rows.
    blank_images: the fine-tuned model sees the text only (the question-only VQA row). device: where every run
    trains ("auto": CUDA when present; a named device is part of the runs' keys, so "cpu" or "cuda" makes run
    folders of its own instead of reusing the "auto" ones of notebooks 04-06). Each row names the run
    folders it came from (`init`: the pretraining run, "" for none; `run`: the fine-tuning run), relative to
    `root`, so that `run_seconds` can add up what a table cost."""
    root = Path(root) if root is not None else runs_root()
    train = None if device == "auto" else {"device": device}  # "auto" keeps the run keys of notebooks 04-06
    init, config = None, None
    if pretrained and fraction > 0:
        init = pretrain(profile, seed, out=root, corpus_fraction=fraction, config_overrides=config_overrides,
                        progress=progress, model_kind=model_kind, train_overrides=train)  # fmt: skip
        config = ViLBertConfig.from_json_file(init / "model" / "config.json")
    elif config_overrides:
        prof = get_profile(profile)
        config = ViLBertConfig.preset(prof.model_preset, **config_overrides)
    rows = []
    for task in tasks:
        if task == "zeroshot" and init is None and model_kind != "vilbert":
            continue
        m = finetune(task, init, profile, seed, backbone=model_kind, config=config, root=root, progress=progress,
                     blank_images=blank_images, train_overrides=train)  # fmt: skip
        for (t, metric), column in COLUMN_OF.items():
            if t == task and metric in m:
                chance = chance_of(metric, m)  # e.g. 1 / 4 for VCR's Q→A, 1 / pool for retrieval R@1
                rows.append(dict(table=table, row=row, seed=seed, column=column, value=100.0 * float(m[metric]),
                                 chance=math.nan if chance is None else 100.0 * float(chance),
                                 init="" if init is None else init.name,
                                 run=f"finetune/{task}-{m['config_hash']}"))  # fmt: skip
    return rows


# ------------------------------------------------------------------------------------------------ tables
TABLE_NAMES = ("table1", "table2", "table3")
FRACTIONS = (0.0, 0.25, 0.5, 1.0)  # Table 3: share of the pretraining corpus


def table_cells(table: str, profile: str) -> list[tuple[object, dict]]:
    """The rows of a paper table as (row key, run_cell keyword arguments).

    table1: question-only (VQA with every image blanked, from scratch: the language prior), single-stream†,
    single-stream, ViLBERT†, ViLBERT; table2: 2/4/6/8 co-attention layers (scaled to
    the profile's model, `depth_overrides`); table3: 0/25/50/100% of the pretraining corpus (0% = ViLBERT†).
    Tables 2 and 3 fine-tune the paper's tasks (`ABLATION_TASKS`, no NLVR-style)."""
    if table == "table1":
        return [
            ("question_only", dict(pretrained=False, tasks=("vqa",), blank_images=True)),
            ("single_stream†", dict(pretrained=False, model_kind="single_stream", tasks=SINGLE_STREAM_TASKS)),
            ("single_stream", dict(model_kind="single_stream", tasks=SINGLE_STREAM_TASKS)),
            ("vilbert†", dict(pretrained=False)),
            ("vilbert", {}),
        ]
    if table == "table2":
        return [
            (d, dict(config_overrides=o, tasks=ABLATION_TASKS)) for d, o in depth_overrides(profile).items()
        ]
    if table == "table3":
        return [(f, dict(fraction=f, pretrained=f > 0, tasks=ABLATION_TASKS)) for f in FRACTIONS]
    raise ValueError(f"unknown table {table!r}; choose one of {TABLE_NAMES}")


def _cost(kw: dict) -> float:
    """A cell's rough cost in fine-tuning runs: ten per full pretraining (times its corpus fraction), one per task."""
    pretraining = kw.get("fraction", 1.0) if kw.get("pretrained", True) else 0.0
    return 10 * pretraining + len(kw.get("tasks", TASKS))


def _cell_job(args: tuple) -> list[dict]:
    """One (table, row, profile, seed, kwargs, root) cell in a worker process (one torch thread)."""
    table, row, profile, seed, kw, root = args
    torch.set_num_threads(1)
    return run_cell(table, row, profile, seed, root=root, **kw)


def prepare_data(profile: str, progress: bool = False) -> None:
    """Extract (or find cached) every feature store the cells need, once, before workers start in parallel."""
    synthetic_data(profile, progress=progress)
    world = make_world(profile, seed=0)
    for kind in ("gt", "proposals"):
        world_features(world, kind, progress=progress)


def run_table(table: str, profile: str, seeds, *, workers: int = 1, root: str | Path | None = None,
              csv: str | Path | None = None, progress: bool = True, executor: Executor | None = None,
              device: str = "auto"):  # fmt: skip
    """Every cell of `table` for every seed -> long DataFrame (table, row, seed, column, value in percent).

    Cells run in `workers` processes (one torch thread each: on a small CPU, two one-thread processes beat one
    two-thread process for these models), or on `executor` (any concurrent.futures.Executor, `runner.run_jobs`).
    Finished runs are reused, so a stopped table resumes. With `csv` the rows are also written there (the file
    that reports read). device: where the runs train (`run_cell`)."""
    root = str(Path(root) if root is not None else runs_root())
    cells = table_cells(table, profile)
    if device != "auto":
        cells = [(row, {**kw, "device": device}) for row, kw in cells]
    # rows with identical settings (e.g. depths that a small model maps to one) run once: key -> rows, key -> job
    groups: dict[tuple, list] = {}
    jobs: dict[tuple, tuple] = {}
    for s in seeds:
        for row, kw in cells:
            key = (s, json.dumps(kw, sort_keys=True, default=str))
            groups.setdefault(key, []).append(row)
            jobs.setdefault(key, (table, row, profile, s, kw, root))
    prepare_data(profile)
    # longest first (a pretraining costs about ten fine-tunings), so that no long cell starts last and leaves the
    # other workers idle; each run's result does not depend on when it runs
    jobs = dict(sorted(jobs.items(), key=lambda kv: -_cost(kv[1][4])))
    bar = tqdm(total=len(jobs), desc=f"{table} ({profile})", disable=not progress)
    results = run_jobs(_cell_job, jobs, workers=workers, executor=executor, progress=bar)
    bar.close()
    rows = [{**r, "row": row} for key, same in groups.items() for row in same for r in results[key]]
    order = {row: i for i, (row, _) in enumerate(cells)}
    df = pd.DataFrame(rows)
    df = df.sort_values(["row", "seed", "column"], key=lambda c: c.map(order) if c.name == "row" else c)
    df = df.reset_index(drop=True)
    if csv is not None:
        Path(csv).parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(csv, index=False)
    return df


def run_seconds(long, root: str | Path | None = None) -> dict:
    """What the runs behind a table (or several: a long DataFrame with `init` / `run` columns) took: the training
    wall time of each distinct pretraining and fine-tuning run, read from its folder under `root`, summed.
    -> {"pretrain_s", "finetune_s", "n_pretrain", "n_finetune", "missing"} (folders not found, e.g. another
    machine's runs)."""
    root = Path(root) if root is not None else runs_root()
    out = {"pretrain_s": 0.0, "finetune_s": 0.0, "n_pretrain": 0, "n_finetune": 0, "missing": []}
    for kind, column, file, key in (("pretrain", "init", "eval.json", "train_wall_time_s"),
                                    ("finetune", "run", "metrics.json", "wall_time_s")):  # fmt: skip
        for name in sorted({x for x in long[column].fillna("") if x}):
            path = root / name / file
            if not path.exists():
                out["missing"].append(name)
                continue
            out[f"{kind}_s"] += float(json.loads(path.read_text()).get(key) or 0.0)
            out[f"n_{kind}"] += 1
    return out


# ------------------------------------------------------------------------------------------------ results
def long_csv(table: str, results_from: str | Path | None = None) -> Path:
    """The per-seed rows of `table` in a results folder (None: the committed `reports/`): tables/TABLE_long.csv."""
    return results_dir(results_from) / "tables" / f"{table}_long.csv"


def read_rows(path: str | Path) -> pd.DataFrame:
    """Long rows written by `run_table(csv=...)`, back with the dtypes `run_table` returns: numeric row keys
    (depths, corpus fractions) as numbers, no-pretraining `init` as "" (the CSV stores it empty)."""
    df = pd.read_csv(path)
    numeric = pd.to_numeric(df["row"], errors="coerce")
    if numeric.notna().all():
        df["row"] = numeric
    for column in ("init", "run"):
        if column in df:
            df[column] = df[column].fillna("").astype(str)
    return df


def table_results(table: str, profile: str, seeds, *, results: str = "runs",
                  results_from: str | Path | None = None, workers: int = 1, root: str | Path | None = None,
                  csv: str | Path | None = None, progress: bool = True, executor: Executor | None = None,
                  device: str = "auto") -> pd.DataFrame:  # fmt: skip
    """A table's long rows (table, row, seed, column, value in percent, chance, init, run), from one of two places.

    results="runs": `run_table` (trains every missing run, reuses finished ones; `workers`, `root`, `executor`,
    `device` go to it). results="reports": the rows stored in `results_from`/tables/TABLE_long.csv (None: the
    committed `reports/`), exactly, with `run_table`'s dtypes, so summaries, tables and claims come out the same;
    nothing trains and no `runs/` is needed. A file that holds other seeds (or, for the committed and
    `reports/<profile>` folders, another profile) than those asked for is said so, and used as it is.
    With `csv` the rows are also written there (unless it is the file read), where the reports read them."""
    check_results(results)
    seeds = list(seeds)
    if results == "runs":
        return run_table(table, profile, seeds, workers=workers, root=root, csv=csv, progress=progress,
                         executor=executor, device=device)  # fmt: skip
    src = long_csv(table, results_from)
    long = stored_rows(src, profile, seeds, f"the {table} runs", read=read_rows)
    write_rows(long, csv, src)
    return long
