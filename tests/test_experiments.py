import json

import pytest

from vilbert_lite.model.config import ViLBertConfig
from vilbert_lite.pretrain.run import plan_pretrain
from vilbert_lite.repro import experiments, paper, reports
from vilbert_lite.repro.plan import plan
from vilbert_lite.tasks import plan_finetune


def test_depth_overrides_follow_the_official_pattern():
    d = experiments.depth_overrides("cpu")  # `mini`: 6 text layers -> 1, 2, 3, 4 co-attention layers
    assert [d[k]["v_num_hidden_layers"] for k in (2, 4, 6, 8)] == [1, 2, 3, 4]
    assert d[6]["v_biattention_id"] == [0, 1, 2] and d[6]["t_biattention_id"] == [3, 4, 5]


@pytest.fixture(scope="module")
def smoke_root(tmp_path_factory):
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def smoke_rows(smoke_root):
    rows = experiments.run_cell("t1", "vilbert", "smoke", 0, tasks=("vqa", "zeroshot"), root=smoke_root)
    rows += experiments.run_cell("t1", "vilbert†", "smoke", 0, pretrained=False, tasks=("vqa", "zeroshot"),
                                 root=smoke_root)  # fmt: skip
    return rows


def test_rows_name_their_runs_and_run_seconds_adds_them_once(smoke_rows, smoke_root):
    import pandas as pd

    df = pd.DataFrame(smoke_rows)
    assert set(df[df.row == "vilbert†"].init) == {""} and set(df[df.row == "vilbert"].init) != {""}
    assert all((smoke_root / r).is_dir() for r in df.run)  # zero-shot's three columns: one run
    t = experiments.run_seconds(df, smoke_root)
    assert t["n_pretrain"] == 1 and t["n_finetune"] == 4 and t["missing"] == []
    init = df[df.row == "vilbert"].init.iloc[0]
    want_pre = json.loads((smoke_root / init / "eval.json").read_text())["train_wall_time_s"]
    want_ft = sum(
        json.loads((smoke_root / r / "metrics.json").read_text())["wall_time_s"] for r in set(df.run)
    )
    assert t["pretrain_s"] == pytest.approx(want_pre) and t["finetune_s"] == pytest.approx(want_ft)
    assert t["pretrain_s"] > 0 and t["finetune_s"] > 0
    gone = experiments.run_seconds(df.assign(run=df.run + "-elsewhere"), smoke_root)
    assert len(gone["missing"]) == 4
    # the planned folders (no training, no extraction) are the ones the cells made
    pre, cfg = plan_pretrain("smoke", 0, out=smoke_root)
    assert pre.name == init
    config = ViLBertConfig.from_dict(cfg["model"])
    for row, init_run, kw in (("vilbert", pre, dict(config=config)), ("vilbert†", None, {})):
        for task in ("vqa", "zeroshot"):
            run, _ = plan_finetune(task, init_run, "smoke", 0, root=smoke_root, **kw)
            assert run.relative_to(smoke_root).as_posix() in set(df[df.row == row].run)
    # and `vilbert-lite plan` finds them finished under the same names
    planned = {r.name: r for r in plan("table1", "smoke", [0], root=smoke_root)}
    for name in {init, *df.run}:
        assert planned[name].state == "finished" and planned[name].seconds > 0, name
    assert gone["n_finetune"] == 0 and len(gone["missing"]) == 4


def test_a_table_on_a_dask_cluster_is_the_table_of_the_local_pool(smoke_rows, smoke_root, monkeypatch):
    """The one table runner takes any concurrent.futures executor: the smoke cells above as a table, on a local
    pool of two spawned processes and on a Dask cluster's worker processes, give the same long table (the runs
    are folders keyed by their config, so both find them finished)."""
    distributed = pytest.importorskip("distributed")
    import pandas as pd

    cells = [("vilbert", dict(tasks=("vqa", "zeroshot"))),
             ("vilbert†", dict(pretrained=False, tasks=("vqa", "zeroshot")))]  # fmt: skip
    monkeypatch.setattr(experiments, "table_cells", lambda table, profile: cells)  # the jobs are built here
    local = experiments.run_table("t1", "smoke", [0], workers=2, root=smoke_root, progress=False)
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        with distributed.Client(cluster) as client:
            on_dask = experiments.run_table(
                "t1", "smoke", [0], root=smoke_root, progress=False, executor=client.get_executor()
            )
    pd.testing.assert_frame_equal(local, on_dask)
    assert set(local.run) == {r["run"] for r in smoke_rows} and len(local) == len(smoke_rows)


def test_cells_give_long_rows_in_percent(smoke_rows):
    import pandas as pd

    df = pd.DataFrame(smoke_rows)
    assert set(df.column) == {"vqa_accuracy", "zs_r@1", "zs_r@5", "zs_r@10"}
    assert set(df.row) == {"vilbert", "vilbert†"} and (df.value >= 0).all() and (df.value <= 100).all()
    s = reports.summarize(df)
    assert len(s) == 8 and (s.n == 1).all()


def test_table_cells_name_every_row_of_the_paper():
    rows = {t: [r for r, _ in experiments.table_cells(t, "cpu")] for t in experiments.TABLE_NAMES}
    assert rows["table1"] == ["question_only", "single_stream†", "single_stream", "vilbert†", "vilbert"]
    q = dict(experiments.table_cells("table1", "cpu"))["question_only"]  # the language prior: VQA, text only
    assert q == {"pretrained": False, "tasks": ("vqa",), "blank_images": True}
    assert rows["table2"] == [2, 4, 6, 8] and rows["table3"] == [0.0, 0.25, 0.5, 1.0]
    kw3 = dict(experiments.table_cells("table3", "cpu"))
    assert kw3[0.0]["pretrained"] is False and kw3[0.5]["fraction"] == 0.5 and kw3[0.5]["pretrained"] is True
    # Tables 2 and 3 fine-tune the paper's columns only: every task of theirs maps to a paper column
    for t in ("table2", "table3"):
        for _, kw in experiments.table_cells(t, "cpu"):
            assert kw["tasks"] == experiments.ABLATION_TASKS
    paper_tasks = {task for (task, _), col in experiments.COLUMN_OF.items() if col in paper.COLUMNS}
    assert set(experiments.ABLATION_TASKS) == paper_tasks
    with pytest.raises(ValueError, match="table4"):
        experiments.table_cells("table4", "cpu")


def test_run_table_runs_identical_cells_once_and_writes_the_csv(monkeypatch, tmp_path):
    calls = []

    def fake_cell(table, row, profile, seed, root=None, **kw):
        calls.append((row, seed))
        n = len(kw["config_overrides"]["v_biattention_id"])
        return [dict(table=table, row=row, seed=seed, column="r@1", value=10.0 * n + seed, chance=1.0)]

    monkeypatch.setattr(experiments, "run_cell", fake_cell)
    monkeypatch.setattr(experiments, "prepare_data", lambda profile, progress=False: None)
    # smoke's tiny model has 3 text layers: depths 2 and 4 map to one co-attention layer, 6 and 8 to two
    df = experiments.run_table(
        "table2", "smoke", [0, 1], root=tmp_path, csv=tmp_path / "t2.csv", progress=False
    )
    assert sorted(calls) == [(2, 0), (2, 1), (6, 0), (6, 1)]
    assert list(df.row) == [2, 2, 4, 4, 6, 6, 8, 8] and list(df.seed) == [0, 1] * 4
    assert df.set_index(["row", "seed"]).value.to_dict() == {
        (2, 0): 10.0, (2, 1): 11.0, (4, 0): 10.0, (4, 1): 11.0, (6, 0): 20.0, (6, 1): 21.0, (8, 0): 20.0,
        (8, 1): 21.0,
    }  # fmt: skip
    back = reports.read_long(tmp_path / "t2.csv")
    assert back.row.tolist() == df.row.tolist()  # numeric row keys survive the CSV


def test_write_summary_reads_the_tables_and_states_the_claims(tmp_path):
    import pandas as pd

    rows = []
    for seed in range(3):
        for row, base in [
            ("vilbert†", 30.0),
            ("vilbert", 60.0),
            ("single_stream†", 20.0),
            ("single_stream", 40.0),
        ]:
            for col in ("vqa_accuracy", "q2a", "zs_r@1"):
                if col == "zs_r@1" and row.startswith("single"):
                    continue
                v = (1.0 if row == "vilbert†" else 20.0 + seed) if col == "zs_r@1" else base + seed
                rows.append(dict(table="table1", row=row, seed=seed, column=col, value=v, chance=1.0))
    long = pd.DataFrame(rows)
    (tmp_path / "tables").mkdir()
    long.to_csv(tmp_path / "tables" / "table1_long.csv", index=False)
    summary, side, _ = reports.report_table(long, "table1", tmp_path)
    assert (tmp_path / "figures" / "table1.png").stat().st_size > 0
    assert side.loc["vilbert", "vqa_accuracy ours"] == "61.00 ± 1.00"
    assert side.loc["vilbert", "vqa_accuracy paper"] == "70.55"
    text = reports.write_summary(tmp_path, "cpu").read_text()
    assert "make reproduce PROFILE=cpu" in text and "61.00 ± 1.00" in text
    assert (
        "| C1 | pretraining helps" in text
        and "| C2 |" in text
        and "Table 2" in text
        and "not run yet" in text
    )
    cl = reports.all_claims(tmp_path / "tables").set_index("claim")
    assert cl.loc["C1", "verdict"] == "held" and cl.loc["C2", "verdict"] == "held"
    assert "compute:" not in text and "12-in-1" not in text  # no run names in these rows; notebook 10 not run

    # rows that name their runs get a compute line; notebook 10's table is included once it is written
    runs = tmp_path / "runs"
    for name, file, key, sec in (("pretrain-a", "eval.json", "train_wall_time_s", 600.0),
                                 ("finetune/vqa-b", "metrics.json", "wall_time_s", 90.0),
                                 ("finetune/vqa-c", "metrics.json", "wall_time_s", 30.0)):  # fmt: skip
        (runs / name).mkdir(parents=True)
        (runs / name / file).write_text(json.dumps({key: sec}))
    long["init"] = long.row.map({"vilbert": "pretrain-a", "single_stream": "pretrain-gone"}).fillna("")
    long["run"] = long.row.map({"vilbert": "finetune/vqa-b"}).fillna("finetune/vqa-c")
    long.to_csv(tmp_path / "tables" / "table1_long.csv", index=False)
    (tmp_path / "tables" / "multitask.md").write_text("| row | G1 |\n|---|---|\n| vanilla | 50.00 |\n")
    (tmp_path / "tables" / "vilt.md").write_text("| row | r@1 |\n|---|---|\n| patch (ViLT) | 7.0 ± 1.0 |\n")
    text = reports.write_summary(tmp_path, "cpu", runs_root=runs).read_text()
    assert "compute: 1 pretraining runs, 10.0 min; 2 fine-tuning runs, 2.0 min" in text
    assert "1 run folder(s) not on this machine" in text
    assert not (tmp_path / "tables" / "table1_compute.txt").exists()  # a partial sum is never stored
    # every run here: the line is stored beside the table and kept once the run folders are gone
    (runs / "pretrain-gone").mkdir()
    (runs / "pretrain-gone" / "eval.json").write_text(json.dumps({"train_wall_time_s": 300.0}))
    text = reports.write_summary(tmp_path, "cpu", runs_root=runs).read_text()
    full = "compute: 2 pretraining runs, 15.0 min; 2 fine-tuning runs, 2.0 min"
    assert full in text and "not on this machine" not in text
    assert (tmp_path / "tables" / "table1_compute.txt").read_text().startswith(full)
    text = reports.write_summary(tmp_path, "cpu", runs_root=tmp_path / "elsewhere").read_text()
    assert full in text and "not on this machine" not in text
    assert "## 12-in-1 · multi-task ablation (notebook 10)" in text and "| vanilla | 50.00 |" in text
    assert "## ViLT beside ViLBERT · accuracy at equal budgets (notebook 11b)" in text
    assert "| 7.0 ± 1.0 |" in text


def test_cpu_finetune_budgets_match_the_measured_curves():
    """The cpu profile's per-task epochs are the plateau epochs of the committed ViLBERT† curves on the
    profile's own task data (the first epoch within 0.01 of the curve's best; steps are never cut to fit a
    clock): every task has such a curve, and a curve of other data (the VCR-style "relation" set) is not read."""
    from vilbert_lite.profiles import get_profile
    from vilbert_lite.repro.plan import budget_curves

    prof = get_profile("cpu")
    curves = budget_curves("cpu")
    assert set(curves) == set(prof.finetune_budgets)
    for task, c in curves.items():
        assert c.get("task_data", {}) == prof.task_data.get(task, {}), task
        assert prof.finetune_budgets[task] == {"epochs": c["budget_epochs"], "max_steps": None}, task
        best = max(e["val"] for e in c["curve"])  # the curve's score (`score`) on the validation items
        first = next(e["epoch"] for e in c["curve"] if e["val"] >= best - 0.01)
        assert c["budget_epochs"] == first, task
    assert curves["vcr"]["file"] == "vilbert_dagger-vcr_attribute-cpu.json"


def test_reproduce_cell_timeouts_leave_room_for_a_whole_table():
    """A table cell of notebooks 07-09 trains every run of its table; at `cpu` that is hours (the committed
    projection per table, reports/bench/reproduce_budget.json; `vilbert-lite plan` projects the same way), so
    the per-cell limit must not cut it (it did at 40 minutes): twice the largest table's projection at least."""
    from pathlib import Path

    from vilbert_lite.profiles import PROFILES
    from vilbert_lite.repro.reproduce import CELL_TIMEOUT_S

    assert set(CELL_TIMEOUT_S) == set(PROFILES) and CELL_TIMEOUT_S["smoke"] <= 900
    budget = json.loads((Path(__file__).parents[1] / "reports/bench/reproduce_budget.json").read_text())
    assert set(budget["table_wall_h"]) == {"table1", "table2", "table3"}
    assert CELL_TIMEOUT_S["cpu"] >= 2 * 3600 * max(budget["table_wall_h"].values())
    assert CELL_TIMEOUT_S["gpu"] is None


def test_run_index_keeps_each_notebooks_latest_run_and_counts_what_it_trained(tmp_path):
    """`--only` and resumed reproductions append to reports/run_log.jsonl; RUN.md shows every notebook's latest
    entry of the profile (in suite order) and how many run folders that execution trained itself."""
    from vilbert_lite.repro import reproduce

    runs = tmp_path / "runs"
    for name in ("pretrain-a", "finetune/vqa-b", "finetune/vcr-c", "multitask/d", "finetune/refer-e"):
        (runs / name).mkdir(parents=True)
    for name in ("pretrain-a", "finetune/vqa-b", "finetune/vcr-c"):  # refer-e did not finish
        (runs / name / "DONE").write_text("{}")
    (runs / "multitask" / "d" / "metrics.json").write_text("{}")  # a multi-task run's own finish marker
    done = reproduce.finished_runs(runs)
    assert done == {"pretrain-a", "finetune/vqa-b", "finetune/vcr-c", "multitask/d"}
    assert reproduce.trained_counts(done - {"finetune/vqa-b"}) == {"pretrain": 1, "finetune": 1, "other": 1}

    reports = tmp_path / "reports"
    reports.mkdir()
    first, second = (next(n for n in reproduce.SUITE if n.startswith(k)) for k in ("07_", "08_"))
    for e in (dict(notebook=second, seconds=5.0, trained={"pretrain": 2, "finetune": 9, "other": 0}),
              dict(notebook=first, seconds=1.0),
              dict(notebook=first, seconds=7.0, trained={"pretrain": 0, "finetune": 3, "other": 1}),
              dict(notebook=first, seconds=99.0, profile="smoke")):  # fmt: skip
        reproduce.append_log(reports, {"status": "ok", "profile": "cpu", "finished": "2026-12-02 10:00", **e})
    reproduce.write_index(reports, "cpu")
    rows = [line for line in (reports / "RUN.md").read_text().splitlines() if line.startswith("| 0")]
    assert rows == [f"| {first} | ok | 7.0 | 2026-12-02 10:00 | 0 / 3 (+ 1 other) |",
                    f"| {second} | ok | 5.0 | 2026-12-02 10:00 | 2 / 9 |"]  # fmt: skip


def test_reproduce_extra_parameters_are_parsed_logged_and_shown(tmp_path, capsys):
    """`reproduce -p n_seeds=2` reads VALUE as JSON (a plain word stays a string), refuses what is not NAME=VALUE
    by naming it, and RUN.md shows a notebook's extra parameters beside its name."""
    import pytest

    from vilbert_lite.repro import reproduce

    assert reproduce.parse_param("n_seeds=2") == ("n_seeds", 2)
    assert reproduce.parse_param("runs_root=/tmp/r") == ("runs_root", "/tmp/r")
    assert reproduce.parse_param("seeds=[0, 1]") == ("seeds", [0, 1])
    for bad in ("n_seeds", "2x=3", "=1"):
        with pytest.raises(ValueError, match="NAME=VALUE"):
            reproduce.parse_param(bad)
    with pytest.raises(SystemExit):
        reproduce.main(["--only", "nothing", "-p", "n_seeds"])
    assert "n_seeds" in capsys.readouterr().err

    reports = tmp_path / "reports"
    reports.mkdir()
    name = reproduce.SUITE[-1]
    reproduce.append_log(reports, {"notebook": name, "status": "ok", "profile": "cpu", "seconds": 3.0,
                                   "finished": "2026-12-03 10:00", "params": {"n_seeds": 2}})  # fmt: skip
    reproduce.write_index(reports, "cpu")
    assert (
        f"| {name}, n_seeds=2 | ok | 3.0 | 2026-12-03 10:00 | not recorded |"
        in (reports / "RUN.md").read_text()
    )


def test_device_reaches_every_run_and_auto_keeps_the_run_keys(monkeypatch, tmp_path):
    """run_table(device=...) hands a named device to each cell, which trains with it (it is part of the runs'
    keys); "auto" hands nothing, so the cells keep the run folders that notebooks 04-06 made."""
    run_cell, seen = experiments.run_cell, []

    def fake_cell(table, row, profile, seed, root=None, **kw):
        seen.append(kw.get("device"))
        return [dict(table=table, row=row, seed=seed, column="r@1", value=1.0, chance=1.0)]

    monkeypatch.setattr(experiments, "run_cell", fake_cell)
    monkeypatch.setattr(experiments, "prepare_data", lambda profile, progress=False: None)
    experiments.run_table("table3", "smoke", [0], root=tmp_path, progress=False)
    assert seen and set(seen) == {None}
    seen.clear()
    experiments.run_table("table3", "smoke", [0], root=tmp_path, progress=False, device="cpu")
    assert seen and set(seen) == {"cpu"}

    calls = {}
    monkeypatch.setattr(
        experiments, "pretrain", lambda *a, **kw: calls.setdefault("pretrain", kw) and tmp_path
    )
    monkeypatch.setattr(experiments, "finetune", lambda *a, **kw: calls.setdefault("finetune", kw) and {})
    monkeypatch.setattr(experiments.ViLBertConfig, "from_json_file", staticmethod(lambda path: None))
    for device, want in (("auto", None), ("cpu", {"device": "cpu"})):
        calls.clear()
        run_cell("t", "r", "smoke", 0, tasks=("vqa",), root=tmp_path, device=device)
        assert calls["pretrain"]["train_overrides"] == want and calls["finetune"]["train_overrides"] == want


def test_a_notebook_read_from_reports_has_its_own_row_in_the_run_index(tmp_path, monkeypatch):
    """`reproduce --results reports` passes results="reports" to the notebooks that declare it (07-09) and logs it;
    RUN.md then shows that execution beside, not instead of, the one that trained the table."""
    import sys
    from pathlib import Path

    from vilbert_lite.repro import reproduce

    name = next(n for n in reproduce.SUITE if n.startswith("07_"))
    for e in (dict(seconds=3000.0, trained={"pretrain": 6, "finetune": 63, "other": 0}),
              dict(seconds=18.0, trained={"pretrain": 0, "finetune": 0, "other": 0}, params={"results": "reports"})):  # fmt: skip
        reproduce.append_log(tmp_path, {"notebook": name, "status": "ok", "profile": "cpu",
                                        "finished": "2026-12-07 10:00", **e})  # fmt: skip
    reproduce.write_index(tmp_path, "cpu")
    rows = [line for line in (tmp_path / "RUN.md").read_text().splitlines() if line.startswith("| 0")]
    assert rows == [f"| {name} | ok | 3000.0 | 2026-12-07 10:00 | 6 / 63 |",
                    f'| {name}, results="reports" | ok | 18.0 | 2026-12-07 10:00 | 0 / 0 |']  # fmt: skip

    seen = {}

    class FakePm:
        @staticmethod
        def execute_notebook(src, out, parameters, **kw):
            seen[Path(src).name] = parameters

    monkeypatch.setitem(sys.modules, "papermill", FakePm)
    monkeypatch.setattr(reproduce, "notebook_parameters",
                        lambda path, reports, extra=None, **p: {**p, **{k: v for k, v in (extra or {}).items()
                                                                      if Path(path).name[:2] in ("07", "08", "09")}})  # fmt: skip
    monkeypatch.setattr(reproduce, "write_summary", lambda *a, **k: None)
    monkeypatch.setenv("VILBERT_LITE_RUNS", str(tmp_path / "runs"))
    reproduce.run_suite("cpu", reports=tmp_path / "r", only=["06_", "07_"], results="reports")
    nb07, nb06 = (next(n for n in reproduce.SUITE if n.startswith(k)) for k in ("07_", "06_"))
    assert seen[nb07]["results"] == "reports" and "results" not in seen[nb06]


def test_tables_read_from_different_samples_of_the_same_runs_say_so(tmp_path):
    """Table 2's 6-layer row and notebook 11b's region row are Table 1's run folders: when their committed numbers
    differ from Table 1's (another machine, runs trained again), the report says so under the later table."""
    import pandas as pd

    tables = tmp_path / "tables"
    tables.mkdir()

    def rows(table, row, values):
        return [dict(table=table, row=row, seed=s, column="vqa_accuracy", value=v, chance=5.0, init="pretrain-a",
                     run=f"finetune/vqa-{s}") for s, v in enumerate(values)]  # fmt: skip

    pd.DataFrame(rows("table1", "vilbert", [70.0, 71.0, 72.0])).to_csv(
        tables / "table1_long.csv", index=False
    )
    pd.DataFrame(rows("table2", 6, [70.0, 71.0, 72.0])).to_csv(tables / "table2_long.csv", index=False)
    vilt = pd.DataFrame(rows("vilt", "region (ViLBERT)", [70.0, 71.5, 73.0])).drop(columns="table")
    vilt.to_csv(tables / "vilt_long.csv", index=False)
    (tables / "vilt.md").write_text("| row | vqa_accuracy |\n|---|---|\n| region (ViLBERT) | 71.5 |\n")
    assert list(reports.shared_run_notes(tables)) == ["vilt"]  # Table 2 agrees with Table 1: no note
    note = reports.shared_run_notes(tables)["vilt"]
    assert "2 of the 3 numbers it shares with Table 1" in note
    text = reports.write_summary(tmp_path, "cpu").read_text()
    assert text.count("Not one sample with") == 1
    assert text.index("Not one sample with Table 1") > text.index("## ViLT beside ViLBERT")

    pd.DataFrame(rows("table2", 6, [70.0, 71.0, 72.5])).to_csv(tables / "table2_long.csv", index=False)
    notes = reports.shared_run_notes(tables)
    assert set(notes) == {"table2", "vilt"} and "1 of the 3 numbers" in notes["table2"]
    # rows that name no run folder are never shared, whatever their values
    for f, v in (("table1_long.csv", 1.0), ("table2_long.csv", 2.0)):
        long = pd.read_csv(tables / f)
        pd.concat([long, long.head(1).assign(run=None, value=v)]).to_csv(tables / f, index=False)
    assert "1 of the 3 numbers" in reports.shared_run_notes(tables)["table2"]
