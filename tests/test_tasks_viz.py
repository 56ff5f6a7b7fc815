"""tasks_viz: the results table, a fine-tuned run reloaded with the same predictions as its metrics.json, and
the failure-case figures (smoke profile, runs in a temporary folder)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pandas as pd
import pytest
import torch

from vilbert_lite.viz import tasks as tv


def test_results_table_rows_and_chance():
    m = {"task": "retrieval", "r@1": 0.5, "r@5": 0.9, "r@10": 1.0, "four_way_accuracy": 0.7, "pool": 20,
         "chance_r@1": 0.05, "chance": 0.25}  # fmt: skip
    t = tv.results_table({"retrieval": {"pretrained": m, "ViLBERT†": {**m, "r@1": 0.1}}})
    assert list(t.columns) == ["pretrained", "ViLBERT†", "chance"]
    assert t.loc[("retrieval", "r@1"), "ViLBERT†"] == pytest.approx(0.1)
    assert t.loc[("retrieval", "r@5"), "chance"] == pytest.approx(0.25)  # 5 / pool
    assert t.loc[("retrieval", "four_way_accuracy"), "chance"] == pytest.approx(0.25)


def test_vqa_accuracy_by_type():
    a = pd.DataFrame({"qtype": ["color", "color", "count", "shape"], "accuracy": [1.0, 0.0, 1.0, 0.0]})
    b = a.assign(accuracy=[1.0, 1.0, 0.0, 0.0])
    t = tv.vqa_accuracy_by_type({"ViLBERT": a, "ViLBERT†": b})
    assert list(t.columns) == ["ViLBERT", "ViLBERT†", "questions"] and list(t.index) == [
        "color",
        "count",
        "shape",
        "all",
    ]
    assert (
        t.loc["color", "ViLBERT"] == 0.5
        and t.loc["color", "ViLBERT†"] == 1.0
        and t.loc["color", "questions"] == 2
    )
    assert (
        t.loc["all", "ViLBERT"] == 0.5 and t.loc["all", "ViLBERT†"] == 0.5 and t.loc["all", "questions"] == 4
    )


def test_ranking_table_marks_truth():
    r = tv.ranking_table(torch.tensor([0.1, 0.9, 0.5]), ["a", "b", "c"], "c", k=2)
    assert r["image_id"].tolist() == ["b", "c"] and r["true image"].tolist() == [False, True]


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    from vilbert_lite.pretrain.run import pretrain
    from vilbert_lite.tasks import finetune

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("runs")
    run = pretrain("smoke", 0, out=root, progress=False)
    from vilbert_lite.profiles import get_profile

    over = {"max_steps": 2}
    res = {t: finetune(t, run, "smoke", 0, root=root, train_overrides=over, progress=False)
           for t in ("vqa", "refer", "vcr")}  # fmt: skip
    # VCR-style questions of the other style: the reloaded run must rebuild its own questions, not the profile's
    other = get_profile("smoke", task_data={"vcr": {"per_scene": 2, "style": _other_vcr_style()}})
    res["vcr other"] = finetune("vcr", run, other, 0, root=root, train_overrides=over, progress=False)
    return root, res


def _smoke_vcr_style() -> str:
    from vilbert_lite.profiles import get_profile

    return get_profile("smoke").task_data.get("vcr", {}).get("style", "relation")


def _other_vcr_style() -> str:
    return "relation" if _smoke_vcr_style() == "attribute" else "attribute"


def test_reloaded_models_reproduce_metrics_and_draw(smoke_runs, tmp_path):
    from vilbert_lite.data.world import make_world

    root, res = smoke_runs
    world = make_world("smoke", 0)
    model, data = tv.load_task_model(tv.run_folder(res["vqa"], root), world)
    assert set(tv.task_heads(model)) == {"vil_prediction"}
    pred = tv.vqa_predictions(model, data, world)
    assert set(pred["qtype"]) <= {q.qtype for q in world.vqa("test")} and pred["qtype"].ne("").all()
    assert pred["accuracy"].mean() == pytest.approx(res["vqa"]["vqa_accuracy"], abs=1e-6)
    tv.plot_vqa_cases(world, pred.head(2), save=tmp_path / "vqa.png")
    model, data = tv.load_task_model(tv.run_folder(res["refer"], root), world)
    pred = tv.refer_predictions(model, data, world)
    assert pred["correct"].mean() == pytest.approx(res["refer"]["refer_accuracy"], abs=1e-6)
    tv.plot_refer_cases(world, pred.head(2), save=tmp_path / "refer.png")
    table = tv.results_table({t: {"pretrained": m} for t, m in res.items() if t != "vcr other"})
    assert isinstance(table, pd.DataFrame) and "majority answer" in table.columns
    tv.plot_results(table, save=tmp_path / "results.png")
    assert (tmp_path / "vqa.png").stat().st_size > 0 and (tmp_path / "refer.png").stat().st_size > 0


def test_vcr_predictions_are_the_runs_metrics_on_its_own_questions(smoke_runs, tmp_path):
    from vilbert_lite.data.world import make_world

    root, res = smoke_runs
    world = make_world("smoke", 0)
    for key, style in (("vcr", _smoke_vcr_style()), ("vcr other", _other_vcr_style())):
        model, data = tv.load_task_model(tv.run_folder(res[key], root), world)
        pred = tv.vcr_predictions(model, data, world)
        opts = data.extra["options"]
        assert opts.get("style", "relation") == style
        assert pred["question"].tolist() == [
            r.question for r in world.vcr("test", opts.get("per_scene", 1), style)
        ]
        for metric in ("q2a", "qa2r", "q2ar"):  # the same numbers as the run's metrics.json
            assert pred[metric].mean() == pytest.approx(res[key][metric], abs=1e-6), (key, metric)
        assert (pred["q2ar"] == (pred["answer"].eq(pred["chosen_answer"]) & pred["qa2r"])).all()
    tv.plot_vcr_cases(world, pred.head(3), save=tmp_path / "vcr.png")
    assert (tmp_path / "vcr.png").stat().st_size > 0
    data.extra["options"] = {"per_scene": 4, "style": style}  # options that are not the run's: said so
    with pytest.raises(ValueError, match="task data options"):
        tv.vcr_predictions(model, data, world)
