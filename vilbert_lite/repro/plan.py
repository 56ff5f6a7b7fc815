"""`vilbert-lite plan TABLE`: every run a table needs, whether it has finished, and what the rest would take.

    vilbert-lite plan table1 --profile cpu [--seeds 3] [--root runs] [--workers 2] [--json FILE]
    vilbert-lite plan table2 --after table1              # only the runs Table 1 does not already train
    vilbert-lite plan budget --profile cpu --json reports/bench/reproduce_budget.json   # Tables 1-3 from scratch
    runs = plan("table1", "cpu", seeds=range(3))        # [PlannedRun, ...], each run once

Trains, extracts and writes nothing. Tables: table1, table2, table3 (the cells of `experiments.table_cells`,
resolved as `experiments.run_cell` resolves them), multitask (`multitask_table`) and vilt (`vilt_table`). Each
run's folder comes from the `plan_*` function of its training call (`plan_pretrain`, `plan_finetune`,
`plan_pretrain_vilt`, `plan_multitask`): the same run config, so the same key, as the call would use. A run
shared by several cells (the full-depth ViLBERT of all three paper tables) is listed once, with every cell that
needs it.

State: "finished" (a pretraining with DONE and eval.json; a fine-tuning or multi-task run whose metrics.json holds
its config hash), "present" (the folder exists but has not finished: a stopped run, which resumes), "missing", or
"pending" (its key is not known yet: the 12-in-1 curriculum rows start with the group the finished single-task
runs converged fastest / slowest on). Seconds: a finished run's measured training wall time; for the others a
projection from measured run times, an estimate, not a timing:

- `cpu` pretraining (ViLBERT, any depth, and the single stream at the same cost per step): the measured wall
  time of one `cpu` pretraining (reports/grounding/cpu.json) times the corpus fraction;
- `cpu` fine-tuning: the task's budget (`Profile.finetune_budgets`) times its measured seconds per epoch on the
  ViLBERT† curve of the task's data (reports/finetune_curves/vilbert_dagger*-cpu.json, `budget_curves`);
  zero-shot retrieval (no training) 15 s;
- anything else (other profiles, ViLT pretraining, multi-task runs): the mean measured time of the finished runs
  of the same kind in the plan; unknown when none has finished.

Seconds are two-thread seconds on an otherwise idle machine; `workers` processes of one thread each run at
THREAD_EFFICIENCY of that speed each (measured, reports/DESIGN_LOG.md, the pretraining step), so the projected
wall time is the projected seconds / (workers x THREAD_EFFICIENCY).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vilbert_lite import runs
from vilbert_lite.model.config import ViLBertConfig
from vilbert_lite.multitask.data import DATASETS
from vilbert_lite.multitask.train import SIZES, plan_multitask
from vilbert_lite.pretrain.run import plan_pretrain
from vilbert_lite.profiles import get_profile
from vilbert_lite.repro import experiments, multitask_table, vilt_table
from vilbert_lite.tasks import plan_finetune
from vilbert_lite.vilt.model import ViLTConfig
from vilbert_lite.vilt.pretrain import plan_pretrain_vilt

TABLES = (*experiments.TABLE_NAMES, "multitask", "vilt")
ZEROSHOT_S = 15.0  # zero-shot retrieval: no training, its evaluation only
THREAD_EFFICIENCY = 0.73  # one-thread workers, each at this share of a two-thread process's speed


@dataclass
class PlannedRun:
    """One run a table needs. `folder` is None while its key is pending."""

    kind: (
        str  # "pretrain" (any ViLBERT / single-stream pretraining), "pretrain_vilt", "finetune", "multitask"
    )
    folder: Path | None
    config: dict = field(default_factory=dict, repr=False)  # its run config (the key is its hash)
    task: str = ""  # the fine-tuning task; the multi-task run's row
    fraction: float = 1.0  # a pretraining's corpus fraction
    cells: list[str] = field(default_factory=list)  # the table cells that need it
    state: str = "missing"  # finished | present | missing | pending
    seconds: float | None = None  # measured when finished, else projected (None: unknown)

    @property
    def name(self) -> str:
        """The run folder relative to the runs root, e.g. "finetune/vqa-426815f60b13"."""
        if self.folder is None:
            return f"{self.kind} ({self.task}: pending)"
        return (
            self.folder.name
            if self.kind.startswith("pretrain")
            else f"{self.folder.parent.name}/{self.folder.name}"
        )


class _Plan:
    """Planned runs, each folder once (its cells merged)."""

    def __init__(self):
        self.runs: dict[str, PlannedRun] = {}

    def add(self, run: PlannedRun, cell: str) -> PlannedRun:
        key = run.name if run.folder is not None else f"{run.name} {cell}"
        run = self.runs.setdefault(key, run)
        run.cells.append(cell)
        return run


# ------------------------------------------------------------------------------------------------ tables
def _paper_table(table: str, profile: str, seeds, root: Path, p: _Plan) -> None:
    """Tables 1-3: each cell's pretraining (unless none) and fine-tunings, as `experiments.run_cell` runs them."""
    for seed in seeds:
        for row, kw in experiments.table_cells(table, profile):
            cell, kind = f"{row}, seed {seed}", kw.get("model_kind", "vilbert")
            fraction, overrides = kw.get("fraction", 1.0), kw.get("config_overrides")
            init, config = None, None
            if kw.get("pretrained", True) and fraction > 0:
                init, cfg = plan_pretrain(profile, seed, out=root, corpus_fraction=fraction,
                                          config_overrides=overrides, model_kind=kind)  # fmt: skip
                p.add(PlannedRun("pretrain", init, cfg, fraction=fraction), cell)
                config = ViLBertConfig.from_dict(cfg["model"])  # what the run's model/config.json holds
            elif overrides:
                config = ViLBertConfig.preset(get_profile(profile).model_preset, **overrides)
            for task in kw.get("tasks", experiments.TASKS):
                if task == "zeroshot" and init is None and kind != "vilbert":
                    continue
                folder, cfg = plan_finetune(task, init, profile, seed, backbone=kind, config=config, root=root,
                                            blank_images=kw.get("blank_images", False))  # fmt: skip
                p.add(PlannedRun("finetune", folder, cfg, task=task), cell)


def _vilt(profile: str, seeds, root: Path, p: _Plan) -> None:
    """ViLT's columns: each row's pretraining and fine-tunings, as `vilt_table.run_cell` runs them."""
    for seed in seeds:
        for row, kind in vilt_table.ROWS.items():
            cell = f"{row}, seed {seed}"
            if kind == "vilbert":
                init, cfg = plan_pretrain(profile, seed, out=root)
                p.add(PlannedRun("pretrain", init, cfg), cell)
                config = ViLBertConfig.from_dict(cfg["model"])
            else:
                embed = "patch" if kind == "vilt" else "grid"
                init, cfg = plan_pretrain_vilt(profile, seed, out=root, visual_embed=embed)
                p.add(PlannedRun("pretrain_vilt", init, cfg), cell)
                config = ViLTConfig.from_dict(cfg["model"])  # the run's own ViLTConfig
            for task in vilt_table.TASKS:
                folder, cfg = plan_finetune(
                    task, init, profile, seed, backbone=kind, config=config, root=root
                )
                p.add(PlannedRun("finetune", folder, cfg, task=task), cell)


def _multitask(profile: str, seeds, root: Path, p: _Plan) -> None:
    """The 12-in-1 ablation, as `multitask_table.run_table` runs it: phase 1 (single-task and multi-task rows),
    then the curriculum rows (their group from phase 1's single-task runs) and MT + finetune."""
    size = SIZES[get_profile(profile).name]
    single: list[PlannedRun] = []
    for seed in seeds:
        init, pre = plan_pretrain(profile, seed, out=root)
        p.add(PlannedRun("pretrain", init, pre), f"every row, seed {seed}")
        base = dict(profile=profile, seed=seed, init=init, init_model=pre["model"], root=root)
        for t in DATASETS:
            folder, cfg = plan_multitask(**base, tasks=(t,))
            single.append(
                p.add(
                    PlannedRun("multitask", folder, cfg, task="single-task"), f"single-task {t}, seed {seed}"
                )
            )
        mt = {}
        for row, kw in multitask_table.MT_ROWS.items():
            mt[row] = plan_multitask(**base, **kw)
            p.add(PlannedRun("multitask", *mt[row], task=row), f"{row}, seed {seed}")
        folder, cfg = mt["token + DSG"]
        for t in DATASETS:
            ft = plan_multitask(profile, seed, (t,), tokens="dataset", init=folder, init_model=cfg["model"],
                                init_is_multitask=True, root=root,
                                train_overrides={"max_steps": size.finetune_iterations})  # fmt: skip
            p.add(PlannedRun("multitask", *ft, task="MT + finetune"), f"MT + finetune {t}, seed {seed}")
    for r in single:
        _check(r)
    order = None
    if single and all(r.state == "finished" for r in single):
        order = multitask_table.convergence_order([_metrics(r) for r in single])
    for seed in seeds:
        init, pre = plan_pretrain(profile, seed, out=root)
        for row, pick in (("curriculum", 0), ("anti-curriculum", -1)):
            cell = f"{row}, seed {seed}"
            if order is None:
                p.add(PlannedRun("multitask", None, task=row, state="pending"), cell)
                continue
            folder, cfg = plan_multitask(profile, seed, init=init, init_model=pre["model"], root=root,
                                         curriculum=order[pick])  # fmt: skip
            p.add(PlannedRun("multitask", folder, cfg, task=row), cell)


# ------------------------------------------------------------------------------------------------ state
def _metrics(run: PlannedRun) -> dict:
    return json.loads((run.folder / "metrics.json").read_text())


def _check(run: PlannedRun) -> None:
    """Set a run's state (and, when finished, its measured seconds) from its folder."""
    if run.folder is None:
        return
    if run.kind.startswith("pretrain"):
        if runs.is_done(run.folder) and (run.folder / "eval.json").exists():
            run.state = "finished"
            run.seconds = float(
                json.loads((run.folder / "eval.json").read_text()).get("train_wall_time_s") or 0.0
            )
            return
    elif (run.folder / "metrics.json").exists():
        m = _metrics(run)
        if m.get("config_hash") == runs.config_hash(run.config):
            run.state, run.seconds = "finished", float(m.get("wall_time_s") or 0.0)
            return
    run.state = "present" if run.folder.exists() else "missing"


def budget_curves(profile: str = "cpu") -> dict[str, dict]:
    """{task: the committed ViLBERT† curve of the task's data at `profile`} for every task with a budget: the
    entry of reports/finetune_curves/vilbert_dagger*-PROFILE.json (not the blank-image controls) whose
    `task_data` is the profile's (`Profile.task_data`, {} when it has none); each with the file it came from.
    A task whose data has no curve is left out; two curves of the same data are an error."""
    prof = get_profile(profile)
    folder = runs.project_root() / "reports" / "finetune_curves"
    found: dict[str, dict] = {}
    for path in sorted(folder.glob(f"vilbert_dagger*-{prof.name}.json")):
        if "-blank" in path.name:
            continue
        for task, c in json.loads(path.read_text())["tasks"].items():
            same = (c.get("task_data") or {}) == prof.task_data.get(task, {})
            if not same or task not in prof.finetune_budgets:
                continue
            if task in found:
                other = found[task]["file"]
                raise ValueError(f"two {task} curves of the same task data: {other}, {path.name}")
            found[task] = {**c, "file": path.name}
    return found


def _reference(profile: str) -> tuple[float | None, dict]:
    """The committed `cpu` measurements the projection reads: (seconds of one pretraining, {task: seconds per
    epoch on the curve of the task's data, `budget_curves`}); (None, {}) for other profiles or when the reports
    are not there."""
    pre = runs.project_root() / "reports" / "grounding" / "cpu.json"
    if get_profile(profile).name != "cpu" or not pre.exists():
        return None, {}
    per_epoch = {t: c["seconds_per_epoch"] for t, c in budget_curves(profile).items()}
    return json.loads(pre.read_text())["eval"]["train_wall_time_s"], per_epoch


def _project(planned: list[PlannedRun], profile: str) -> None:
    """Projected seconds of every run that has not finished (see the module docstring)."""
    pre_s, per_epoch = _reference(profile)
    budgets = get_profile(profile).finetune_budgets
    measured = defaultdict(list)  # (kind, task) -> seconds of finished runs (pretraining: per full corpus)
    for r in planned:
        if r.state == "finished":
            measured[(r.kind, r.task)].append(r.seconds / r.fraction if r.kind == "pretrain" else r.seconds)
    for r in planned:
        if r.state == "finished" or r.folder is None:
            continue
        if r.kind == "finetune" and r.task == "zeroshot" and pre_s is not None:
            r.seconds = ZEROSHOT_S
        elif r.kind == "pretrain" and pre_s is not None:
            r.seconds = pre_s * r.fraction
        elif r.kind == "finetune" and r.task in per_epoch and r.task in budgets:
            r.seconds = budgets[r.task]["epochs"] * per_epoch[r.task]
        elif measured[(r.kind, r.task)]:
            r.seconds = float(np.mean(measured[(r.kind, r.task)])) * (
                r.fraction if r.kind == "pretrain" else 1
            )


def plan(
    table: str, profile: str = "cpu", seeds=range(3), root: str | Path | None = None, after=()
) -> list[PlannedRun]:
    """Every run `table` needs at `profile` for `seeds`, each once, with its state and seconds (measured or
    projected). root: the runs folder (default: the project's runs/, $VILBERT_LITE_RUNS). after: tables whose
    runs are left out (they trained before, e.g. Table 1's full-depth ViLBERT when notebook 08 runs after 07),
    so that the plan is what this table adds."""
    for t in (table, *after):
        if t not in TABLES:
            raise ValueError(f"unknown table {t!r}; choose one of {', '.join(TABLES)}")
    if after:
        earlier = {r.name for t in after for r in plan(t, profile, seeds, root)}
        return [r for r in plan(table, profile, seeds, root) if r.name not in earlier]
    root = Path(root) if root is not None else runs.runs_root()
    p = _Plan()
    if table == "multitask":
        _multitask(profile, list(seeds), root, p)
    elif table == "vilt":
        _vilt(profile, list(seeds), root, p)
    else:
        _paper_table(table, profile, list(seeds), root, p)
    planned = list(p.runs.values())
    for r in planned:
        _check(r)
    _project(planned, profile)
    return planned


def totals(planned: list[PlannedRun], workers: int = 2) -> dict:
    """Counts by state, the measured seconds of the finished runs, the projected seconds of the rest (and how
    many of them have no projection) and the projected wall time with `workers` one-thread processes."""
    todo = [r for r in planned if r.state != "finished"]
    projected = sum(r.seconds for r in todo if r.seconds is not None)
    wall = projected / (workers * THREAD_EFFICIENCY) if workers > 1 else projected
    return {"runs": len(planned), **{s: sum(r.state == s for r in planned) for s in ("finished", "present",
            "missing", "pending")}, "finished_s": round(sum(r.seconds for r in planned if r.state == "finished"), 1),
            "projected_s": round(projected, 1), "unknown": sum(r.seconds is None for r in todo),
            "workers": workers, "projected_wall_h": round(wall / 3600, 2)}  # fmt: skip


def budget(profile: str = "cpu", seeds: int = 3, workers: int = 2) -> dict:
    """The projected compute of Tables 1-3 from scratch (an empty runs folder; a run shared by several tables
    counted once), as reports/bench/reproduce_budget.json holds it: `vilbert-lite plan budget --json FILE`."""
    with tempfile.TemporaryDirectory() as empty:
        each = {t: plan(t, profile, range(seeds), root=empty) for t in experiments.TABLE_NAMES}
    planned = list({r.name: r for t in each.values() for r in t}.values())
    pre = [r for r in planned if r.kind == "pretrain"]
    fine = [r for r in planned if r.kind == "finetune"]
    per_task = {r.task: r.seconds for r in fine}
    t = totals(planned, workers)
    return {
        "what": f"projected compute of Tables 1-3 at the profile, {seeds} seeds, from an empty runs folder "
        "(an estimate from measured run times: vilbert_lite/repro/plan.py)",
        "command": f"vilbert-lite plan budget --profile {profile} --seeds {seeds} --workers {workers} --json FILE",
        "profile": profile, "seeds": seeds, "workers": workers, "thread_efficiency": THREAD_EFFICIENCY,
        "pretraining_s_per_run": max((r.seconds or 0.0) for r in pre) if pre else None,
        "finetune_s_per_run": dict(sorted(per_task.items())),
        "pretraining_runs": len(pre), "pretraining_run_equivalents": sum(r.fraction for r in pre),
        "finetuning_runs": len(fine),
        "pretraining_h": round(sum(r.seconds or 0.0 for r in pre) / 3600, 2),
        "finetuning_h": round(sum(r.seconds or 0.0 for r in fine) / 3600, 2),
        "two_thread_h": round(t["projected_s"] / 3600, 2), "projected_wall_h": t["projected_wall_h"],
        "table_wall_h": {name: totals(runs_, workers)["projected_wall_h"] for name, runs_ in each.items()},
    }  # fmt: skip


# ------------------------------------------------------------------------------------------------ CLI
def cli(argv: list[str]) -> int:
    """`vilbert-lite plan TABLE|budget [--after TABLE ...] [--profile P] [--seeds N] [--root DIR] [--workers W]
    [--json FILE]`"""
    ap = argparse.ArgumentParser(prog="vilbert-lite plan", description=__doc__.splitlines()[0])
    ap.add_argument("table", choices=(*TABLES, "budget"), help="a table, or budget: Tables 1-3 from scratch")
    ap.add_argument("--profile", default="cpu", choices=["smoke", "cpu", "gpu"])
    ap.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default 3, as the notebooks)")
    ap.add_argument("--root", default=None, help="runs folder (default: the project's runs/)")
    ap.add_argument(
        "--workers", type=int, default=2, help="one-thread processes, for the projected wall time"
    )
    ap.add_argument("--after", nargs="+", default=[], choices=TABLES, metavar="TABLE",
                    help="leave out the runs these tables need (trained before): what TABLE adds")  # fmt: skip
    ap.add_argument("--json", default=None, help="also write the plan here")
    a = ap.parse_args(argv)
    if a.table == "budget":
        b = budget(a.profile, a.seeds, a.workers)
        if a.json:
            b["command"] = b["command"].replace("FILE", a.json)
        print(json.dumps(b, indent=1))
        if a.json:
            runs.write_json(a.json, b)
        return 0
    planned = plan(a.table, a.profile, range(a.seeds), a.root, after=a.after)
    t = totals(planned, a.workers)
    after = f" not in {', '.join(a.after)}" if a.after else ""
    print(f"{a.table} ({a.profile}, {a.seeds} seed(s)): {t['runs']} runs{after}, {t['finished']} finished "
          f"({t['finished_s'] / 3600:.2f} h measured), {t['present']} present, {t['missing']} missing, "
          f"{t['pending']} pending; projected {t['projected_s'] / 3600:.2f} h of training"
          + (f" ({t['unknown']} without a projection)" if t["unknown"] else "")
          + f", {t['projected_wall_h']:.2f} h with {a.workers} worker(s)")  # fmt: skip
    for r in planned:
        s = "?" if r.seconds is None else f"{'' if r.state == 'finished' else '~'}{r.seconds:.0f}s"
        print(f"  {r.state:<9}{s:>9}  {r.name:<40} {'; '.join(r.cells)}")
    if a.json:
        rows = [{"run": r.name, "kind": r.kind, "task": r.task, "state": r.state, "seconds": r.seconds,
                 "cells": r.cells} for r in planned]  # fmt: skip
        runs.write_json(a.json, {"table": a.table, "after": a.after, "profile": a.profile, "seeds": a.seeds,
                                 "totals": t, "runs": rows})  # fmt: skip
    return 0
