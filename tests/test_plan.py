"""`vilbert-lite plan`: every run a table needs under the keys its training calls give them, nothing trained or
written; finished runs are found and measured, the rest projected from measured times."""

from __future__ import annotations

import json

import pytest

from vilbert_lite import runs
from vilbert_lite.cli import main
from vilbert_lite.multitask.data import DATASETS
from vilbert_lite.pretrain.run import plan_pretrain
from vilbert_lite.repro import plan as P


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("VILBERT_LITE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "runs"


def test_table1_lists_every_run_once_and_writes_nothing(env):
    planned = P.plan("table1", "smoke", [0], root=env)
    kinds = [r.kind for r in planned]
    # ViLBERT and the single stream pretrain; 1 + 4 + 4 + 6 + 6 fine-tunings
    assert kinds.count("pretrain") == 2 and kinds.count("finetune") == 21
    assert len({r.name for r in planned}) == len(planned) and all(r.state == "missing" for r in planned)
    assert not env.exists()  # planning fixes each run's folder without creating it
    vilbert = next(r for r in planned if r.kind == "pretrain" and r.cells == ["vilbert, seed 0"])
    assert vilbert.name == plan_pretrain("smoke", 0, out=env)[0].name
    assert all(r.seconds is None for r in planned)  # smoke: nothing measured yet, no committed measurement


def test_a_finished_run_is_found_measured_and_projects_its_kind(env):
    first = P.plan("table1", "smoke", [0], root=env)
    question = next(r for r in first if r.cells == ["question_only, seed 0"])
    question.folder.mkdir(parents=True)
    (question.folder / "metrics.json").write_text(
        json.dumps({"config_hash": runs.config_hash(question.config), "wall_time_s": 36})
    )
    other = next(r for r in first if r.task == "nlvr")
    other.folder.mkdir(parents=True)  # a started run
    again = {r.name: r for r in P.plan("table1", "smoke", [0], root=env)}
    assert again[question.name].state == "finished" and again[question.name].seconds == 36.0
    assert again[other.name].state == "present"
    vqa = [r for r in again.values() if r.task == "vqa" and r.state != "finished"]
    assert vqa and all(r.seconds == 36.0 for r in vqa)  # projected from the finished VQA run
    t = P.totals(list(again.values()), workers=1)
    assert t["finished"] == 1 and t["present"] == 1 and t["finished_s"] == 36.0
    assert t["projected_s"] == pytest.approx(36.0 * len(vqa)) and t["unknown"] == 23 - 1 - len(vqa)
    # a metrics.json of another config is not this run's
    (question.folder / "metrics.json").write_text(json.dumps({"config_hash": "other", "wall_time_s": 36}))
    assert {r.name: r for r in P.plan("table1", "smoke", [0], root=env)}[question.name].state == "present"


def test_cpu_projection_reads_the_committed_measurements(tmp_path):
    planned = P.plan("table3", "cpu", [0], root=tmp_path)
    pre = {r.fraction: r for r in planned if r.kind == "pretrain"}
    assert set(pre) == {0.25, 0.5, 1.0} and pre[0.5].seconds == pytest.approx(pre[1.0].seconds / 2)
    zs = [r for r in planned if r.task == "zeroshot"]
    assert zs and all(r.seconds == P.ZEROSHOT_S for r in zs)
    assert all(r.seconds and r.seconds > 0 for r in planned)
    assert "pretrain-94bcdcebe309" in {r.name for r in planned}  # ViLBERT at 100 %: Table 1's run too


def test_after_leaves_out_what_earlier_tables_train(env, capsys):
    """`--after table1`: Table 2 without Table 1's runs (its full-depth row is Table 1's ViLBERT), so that the
    finished seconds are what notebook 08 adds after notebook 07."""
    one = {r.name for r in P.plan("table1", "smoke", [0], root=env)}
    two = {r.name for r in P.plan("table2", "smoke", [0], root=env)}
    added = {r.name for r in P.plan("table2", "smoke", [0], root=env, after=["table1"])}
    assert one & two and added == two - one
    argv = ["plan", "table2", "--after", "table1", "--profile", "smoke", "--seeds", "1", "--root", str(env)]
    assert main(argv) == 0
    head = f"table2 (smoke, 1 seed(s)): {len(added)} runs not in table1, 0 finished"
    assert capsys.readouterr().out.startswith(head)
    with pytest.raises(ValueError, match="table4"):
        P.plan("table2", "smoke", [0], root=env, after=["table4"])


def test_vilt_and_multitask_tables(env):
    vilt = P.plan("vilt", "smoke", [0], root=env)
    assert [r.kind for r in vilt].count("pretrain_vilt") == 2 and [r.kind for r in vilt].count(
        "finetune"
    ) == 12
    mt = P.plan("multitask", "smoke", [0], root=env)
    by = {}
    for r in mt:
        by.setdefault(r.task, []).append(r)
    assert len(by["single-task"]) == len(by["MT + finetune"]) == len(DATASETS) and len(by["vanilla"]) == 1
    assert [r.state for r in by["curriculum"] + by["anti-curriculum"]] == ["pending", "pending"]
    token_dsg = by["token + DSG"][0]
    assert all(r.config["init"] == str(token_dsg.folder) for r in by["MT + finetune"])


def test_command_line(env, capsys):
    out = env.parent / "plan.json"
    code = main(
        ["plan", "table1", "--profile", "smoke", "--seeds", "1", "--root", str(env), "--json", str(out)]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert text.startswith("table1 (smoke, 1 seed(s)): 23 runs, 0 finished") and "finetune/vqa-" in text
    data = json.loads(out.read_text())
    assert data["totals"]["missing"] == 23 and len(data["runs"]) == 23
    assert main(["plan", "table4"]) == 2


def test_tables_1_to_3_at_cpu_are_the_committed_projection(tmp_path):
    """Tables 1-3 at `cpu` with 3 seeds: 21 pretrainings and 138 fine-tunings (a run shared by several tables
    counted once), projected as reports/bench/reproduce_budget.json was."""
    budget = json.loads((runs.project_root() / "reports" / "bench" / "reproduce_budget.json").read_text())
    every = {
        r.name: r for t in ("table1", "table2", "table3") for r in P.plan(t, "cpu", range(3), root=tmp_path)
    }
    planned = list(every.values())
    assert sum(r.kind == "pretrain" for r in planned) == budget["pretraining_runs"] == 21
    assert sum(r.kind == "finetune" for r in planned) == budget["finetuning_runs"] == 138
    t = P.totals(planned, workers=budget["workers"])
    assert t["unknown"] == 0 and t["projected_s"] / 3600 == pytest.approx(budget["two_thread_h"], abs=0.01)
    assert t["projected_wall_h"] == pytest.approx(budget["projected_wall_h"], abs=0.01)
    # and `vilbert-lite plan budget` writes the committed file as it is (its command names the file it wrote)
    fresh = P.budget("cpu", budget["seeds"], budget["workers"])
    written = budget.pop("command").replace("reports/bench/reproduce_budget.json", "FILE")
    assert fresh.pop("command") == written
    assert fresh == budget
