"""How far Tables 1-3 are at a profile: which of their runs have finished in the runs folder, and what the
finished ones took. Trains nothing.

    .venv/bin/python tools/table_progress.py [--profile cpu] [--seeds 3] [--json out.json]

Every cell is resolved the way `experiments.run_cell` resolves it (same `pretrain` / `finetune` calls, so the
same run keys), with `runs.prepare_run` swapped for a probe that reports the run folder and stops there: a
pretraining counts as finished when its folder has DONE and eval.json, a fine-tuning when its metrics.json
holds the run's config hash. A fine-tuning whose pretraining has not finished is pending (its key needs the
pretrained model's config). Runs shared by several cells (the full-depth ViLBERT of all three tables) count
once per table, as each table's notebook reuses them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class Probe(Exception):
    def __init__(self, out: Path, cfg: dict):
        super().__init__(str(out))
        self.out, self.cfg = Path(out), cfg


def _probe(out, cfg):
    raise Probe(out, cfg)


def resolve(fn, *args, **kw) -> Probe:
    """Call `fn` until it fixes its run folder -> the Probe holding that folder and config."""
    try:
        fn(*args, **kw)
    except Probe as p:
        return p
    raise RuntimeError("the run was not probed: prepare_run is no longer where the run key is fixed")


def table_progress(table: str, profile: str, seeds, root: Path) -> dict:
    """-> {"pretrain": [done, planned], "finetune": [done, planned], "pretrain_s", "finetune_s", "pending": [...]}
    for one table; seconds are the finished runs' own training wall times."""
    from vilbert_lite import runs
    from vilbert_lite.model.config import ViLBertConfig
    from vilbert_lite.pretrain.run import pretrain
    from vilbert_lite.profiles import get_profile
    from vilbert_lite.repro import experiments
    from vilbert_lite.tasks import finetune
    from vilbert_lite.tasks.common import METRICS_FILE

    out = {"pretrain": [0, 0], "finetune": [0, 0], "pretrain_s": 0.0, "finetune_s": 0.0, "pending": []}
    seen_pre, seen_fine = set(), set()
    for seed in seeds:
        for row, kw in experiments.table_cells(table, profile):
            kind = kw.get("model_kind", "vilbert")
            overrides = kw.get("config_overrides")
            fraction = kw.get("fraction", 1.0)
            init, config, init_done = None, None, True
            if kw.get("pretrained", True) and fraction > 0:
                p = resolve(pretrain, profile, seed, out=root, corpus_fraction=fraction, config_overrides=overrides,
                            progress=False, model_kind=kind)  # fmt: skip
                init = p.out
                init_done = runs.is_done(p.out) and (p.out / "eval.json").exists()
                if p.out not in seen_pre:
                    seen_pre.add(p.out)
                    out["pretrain"][1] += 1
                    if init_done:
                        out["pretrain"][0] += 1
                        ev = json.loads((p.out / "eval.json").read_text())
                        out["pretrain_s"] += ev["train_wall_time_s"]
                    else:
                        out["pending"].append(f"{p.out.name} ({row}, seed {seed})")
                if init_done:
                    config = ViLBertConfig.from_json_file(p.out / "model" / "config.json")
            elif overrides:
                config = ViLBertConfig.preset(get_profile(profile).model_preset, **overrides)
            for task in kw.get("tasks", experiments.TASKS):
                if task == "zeroshot" and init is None and kind != "vilbert":
                    continue
                if not init_done:
                    out["finetune"][1] += 1
                    out["pending"].append(f"{task} after {init.name} ({row}, seed {seed})")
                    continue
                f = resolve(finetune, task, init, profile, seed, backbone=kind, config=config, root=root,
                            progress=False, blank_images=kw.get("blank_images", False))  # fmt: skip
                if f.out in seen_fine:
                    continue
                seen_fine.add(f.out)
                out["finetune"][1] += 1
                metrics = f.out / METRICS_FILE
                m = json.loads(metrics.read_text()) if metrics.exists() else {}
                if m.get("config_hash") == runs.config_hash(f.cfg):
                    out["finetune"][0] += 1
                    out["finetune_s"] += float(m.get("wall_time_s") or 0.0)
                else:
                    out["pending"].append(f"finetune/{f.out.name} ({row}, seed {seed})")
    return out


def main() -> None:
    import functools
    from unittest import mock

    import vilbert_lite.data.world as world_mod
    import vilbert_lite.tasks as tasks_mod
    from vilbert_lite import runs
    from vilbert_lite.repro import experiments

    @functools.cache
    def make_world(profile="cpu", seed=0, sizes=None):  # one world and store per process, not one per run
        return original_make_world(profile, seed=seed, sizes=sizes)

    @functools.cache
    def world_features(world, kind, extractor=None, progress=False):
        return original_world_features(world, kind, extractor=extractor, progress=progress)

    original_make_world, original_world_features = world_mod.make_world, tasks_mod.world_features

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--tables", nargs="*", default=list(experiments.TABLE_NAMES))
    ap.add_argument("--root", default=None, help="runs folder (default: the project's runs/)")
    ap.add_argument("--json", default=None, help="also write the result here")
    ap.add_argument("--pending", action="store_true", help="list every run that has not finished")
    a = ap.parse_args()
    root = Path(a.root) if a.root else runs.runs_root()
    result = {}
    with (
        mock.patch.object(runs, "prepare_run", _probe),
        mock.patch.object(world_mod, "make_world", make_world),
        mock.patch.object(tasks_mod, "world_features", world_features),
    ):
        for table in a.tables:
            r = table_progress(table, a.profile, range(a.seeds), root)
            result[table] = r
            print(f"{table}: pretraining {r['pretrain'][0]}/{r['pretrain'][1]} finished "
                  f"({r['pretrain_s'] / 3600:.2f} h), fine-tuning {r['finetune'][0]}/{r['finetune'][1]} "
                  f"({r['finetune_s'] / 3600:.2f} h)")  # fmt: skip
            if a.pending:
                print("  pending: " + "\n           ".join(r["pending"]))
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
