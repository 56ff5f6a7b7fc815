"""Tables and figures for the fine-tuning and retrieval notebooks (05, 06): results against ViLBERT† and chance,
a task's predictions read back from its run folder, and failure cases drawn on the images.

    model, data = load_task_model(run_folder, world)          # the fine-tuned TaskModel and the task's data
    heads = task_heads(model)                                 # {name: module}: everything but the backbone
    results_table({"vqa": {"pretrained": m1, "ViLBERT†": m2}})  # metric rows, pretrained / ViLBERT† / chance
    wrong = vqa_predictions(model, data, world).query("accuracy < 1")
    plot_vqa_cases(world, wrong.head(4)); plot_refer_cases(world, refer_predictions(model, data, world))
"""

from __future__ import annotations

import json
import textwrap
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image
from torch import nn

from vilbert_lite import runs
from vilbert_lite.data.world import make_world
from vilbert_lite.model.config import ViLBertConfig
from vilbert_lite.tasks import get_task
from vilbert_lite.tasks.common import (
    ImageBank,
    Source,
    TaskModel,
    chance_of,
    evaluate_batches,
    load_backbone,
    world_features,
)
from vilbert_lite.tasks.refer import IOU_THRESHOLD, _pick
from vilbert_lite.tasks.vcr import questions as vcr_questions
from vilbert_lite.tasks.vqa import normalize_answer


def results_table(results: dict[str, dict[str, dict]], baseline: str = "ViLBERT†") -> pd.DataFrame:
    """{task: {column: metrics dict}} -> one row per (task, metric): each column's value and the chance level
    (plus the majority-answer baseline where the task reports one). Columns missing for a task stay empty."""
    columns = list(dict.fromkeys(c for by_init in results.values() for c in by_init))
    rows = []
    for task, by_init in results.items():
        any_m = next(iter(by_init.values()))
        for metric in get_task(task).metrics:
            row = {"task": task, "metric": metric}
            row.update({c: by_init[c].get(metric) if c in by_init else None for c in columns})
            row["chance"] = chance_of(metric, any_m)
            if metric == "vqa_accuracy" and "majority_baseline" in any_m:
                row["majority answer"] = any_m["majority_baseline"]
            rows.append(row)
    return pd.DataFrame(rows).set_index(["task", "metric"]).astype(float)


def run_folder(metrics: dict, root: str | Path | None = None) -> Path:
    """The run folder of a finetune() result: ROOT/finetune/<task>-<config hash> (ROOT: the project's runs)."""
    root = Path(root) if root is not None else runs.runs_root()
    return root / "finetune" / f"{metrics['task']}-{metrics['config_hash']}"


def load_task_model(run: str | Path, world=None, device: str | torch.device = "cpu"):
    """A finished fine-tuning run folder -> (TaskModel in eval mode with the run's final weights, TaskData).

    The task's data is rebuilt from the run's config (the world of its profile, unless `world` is given);
    a zero-shot run (no trained weights) is rebuilt from its --init run."""
    run = Path(run)
    cfg = json.loads((run / "run_config.json").read_text())
    spec = get_task(cfg["task"])
    if cfg["data"]["kind"] != "synthetic":
        raise ValueError(f"{run}: only runs on the synthetic world can be reloaded here")
    world = world if world is not None else make_world(cfg["profile"], seed=cfg["data"]["world_seed"])
    store, _ = world_features(world, spec.features, progress=False)
    data = spec.load(
        Source("synthetic", ImageBank(store), world=world, options=cfg["data"].get("options", {}))
    )
    config = ViLBertConfig.from_dict(cfg["model"])
    init = None if cfg["init"] == "none" else cfg["init"]
    weights = run / "model.pt"
    bert = load_backbone(init if not weights.exists() else None, config,
                         None if cfg["backbone"] == "vilbert" else cfg["backbone"])  # fmt: skip
    model = TaskModel(bert, spec.forward, **spec.heads(getattr(bert, "config", config), data,
                                                       init if not weights.exists() else None))  # fmt: skip
    if weights.exists():
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    # the task data options it was trained on (e.g. the VCR-style questions' style), for `vcr_predictions`
    data.extra.setdefault("options", cfg["data"].get("options", {}))
    return model.to(device).eval(), data


def task_heads(model: nn.Module) -> dict[str, nn.Module]:
    """The task heads of a TaskModel: every child module except the backbone."""
    return {name: m for name, m in model.named_children() if name != "bert"}


def vqa_predictions(model, data, world, split: str = "test") -> pd.DataFrame:
    """One row per question: image, question, most common human answer, the model's answer, its VQA accuracy."""
    records, items = world.vqa(split), getattr(data, split)
    vocab = data.extra["vocab"]
    pred = torch.cat(evaluate_batches(model, items, data.collate, lambda m, b: m(b).argmax(1).cpu(), 64))
    rows = []
    for r, it, p in zip(records, items, pred.tolist()):
        answers = [normalize_answer(a) for a in r.answers]
        rows.append({"image_id": r.image_id, "question": r.question, "answer": Counter(answers).most_common(1)[0][0],
                     "predicted": vocab[p], "accuracy": float(it["target"][p]), "qtype": r.qtype})  # fmt: skip
    return pd.DataFrame(rows)


def vqa_accuracy_by_type(predictions: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """VQA accuracy per question type for each model's `vqa_predictions` (same questions) -> one row per type
    (and "all"), a column per model, and the number of questions."""
    first = next(iter(predictions.values()))
    out = pd.DataFrame({name: df.groupby("qtype")["accuracy"].mean() for name, df in predictions.items()})
    out["questions"] = first.groupby("qtype").size()
    out.loc["all"] = [df["accuracy"].mean() for df in predictions.values()] + [len(first)]
    out["questions"] = out["questions"].astype(int)
    out.index.name = "question type"
    return out


def refer_predictions(model, data, world, split: str = "test") -> pd.DataFrame:
    """One row per expression: image, phrase, the true box, the chosen proposal's box and its IoU with the truth."""
    records, items = world.refexps(split), getattr(data, split)
    pick = torch.cat(evaluate_batches(model, items, data.collate, lambda m, b: _pick(m(b), b).cpu(), 64))
    rows = []
    for r, it, k in zip(records, items, pick.tolist()):
        rows.append({"image_id": r.image_id, "text": r.text, "true_box": tuple(float(x) for x in r.box),
                     "predicted_box": tuple(float(x) for x in it["pairs"][0]["boxes"][k]),
                     "iou": float(it["iou"][k]), "correct": bool(it["iou"][k] > IOU_THRESHOLD)})  # fmt: skip
    return pd.DataFrame(rows)


def vcr_predictions(model, data, world, split: str = "test") -> pd.DataFrame:
    """One row per VCR-style question: image, question, the four answers and rationales, the right and the chosen
    option of each (Q→A; QA→R given the right answer) and whether both are right (Q→AR). The questions are the
    world's, with the task data options the run was trained on (`load_task_model` keeps them)."""
    options = data.extra.get("options", {})
    records = vcr_questions(Source("synthetic", None, world=world, options=options), split)
    items = getattr(data, split)
    if len(items) != 2 * len(records):
        raise ValueError(f"vcr: {len(items)} {split} items for {len(records)} questions (two each expected); "
                         f"are the task data options {options} the run's?")  # fmt: skip
    pick = torch.cat(evaluate_batches(model, items, data.collate, lambda m, b: m(b).argmax(1).cpu(), 64))
    # (questions, [Q→A, QA→R]): the items alternate, as vcr.build_items lays them out
    pick = pick.view(-1, 2).tolist()
    rows = []
    for r, (a, why) in zip(records, pick):
        rows.append({"image_id": r.image_id, "question": r.question, "answers": r.answers,
                     "rationales": r.rationales, "answer": r.answers[r.answer_label], "chosen_answer": r.answers[a],
                     "rationale": r.rationales[r.rationale_label], "chosen_rationale": r.rationales[why],
                     "q2a": a == r.answer_label, "qa2r": why == r.rationale_label})  # fmt: skip
    out = pd.DataFrame(rows)
    out["q2ar"] = out["q2a"] & out["qa2r"]
    return out


def plot_vcr_cases(world, cases: pd.DataFrame, cols: int = 3, title: str | None = None, save=None) -> Figure:
    """Each case (a row of `vcr_predictions`) as its image titled with the question and, for the answer and the
    rationale, the right option and the model's choice (green when right, red when wrong)."""
    if len(cases) == 0:
        raise ValueError("no VCR cases to draw")
    fig, axes = _grid(len(cases), cols, size=3.4, title_h=1.3)
    for ax, (_, c) in zip(axes, cases.iterrows()):
        ax.imshow(world.image(c["image_id"]))
        lines = [_wrap("Q: " + c["question"], 44), _wrap(f"A: {c['answer']}  (chose: {c['chosen_answer']})", 44),
                 _wrap(f"R: {c['rationale']}", 44)]  # fmt: skip
        if not c["qa2r"]:
            lines.append(_wrap(f"chose: {c['chosen_rationale']}", 44))
        ax.set_title("\n".join(lines), fontsize=7.5, color="darkgreen" if c["q2ar"] else "firebrick")
    return _finish(fig, title, save)


def _wrap(text: str, width: int = 34) -> str:
    return "\n".join(textwrap.wrap(text, width))


def _grid(n: int, cols: int, size: float = 2.8, title_h: float = 0.9):
    """A figure of n image panels, `cols` a row, each `size` inches wide with `title_h` inches for its title."""
    cols = max(1, min(cols, n))
    rows = max(1, -(-n // cols))
    # not pyplot's Figure: the cell's value shows it once
    fig = Figure(figsize=(size * cols, (size + title_h) * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    return fig, list(axes.flat)


def plot_vqa_cases(world, cases: pd.DataFrame, cols: int = 4, title: str | None = None, save=None) -> Figure:
    """Each case (a row of `vqa_predictions`) as its image titled with the question, answer and prediction."""
    if len(cases) == 0:
        raise ValueError("no VQA cases to draw (the model answered every question shown right?)")
    fig, axes = _grid(len(cases), cols)
    for ax, (_, c) in zip(axes, cases.iterrows()):
        ax.imshow(world.image(c["image_id"]))
        ok = c["accuracy"] >= 1
        ax.set_title(f"{_wrap('Q: ' + c['question'])}\nanswer: {c['answer']}\npredicted: {c['predicted']}",
                     fontsize=8, color="darkgreen" if ok else "firebrick")  # fmt: skip
    return _finish(fig, title, save)


def _finish(fig: Figure, title: str | None, save) -> Figure:
    """Suptitle, layout and optional PNG for a grid of cases."""
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 0.94) if title else None)
    if save:
        fig.savefig(save, dpi=120)
    return fig


def _box(ax, box, color: str, style: str = "-", label: str | None = None):
    x1, y1, x2, y2 = box
    ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=2.2, ec=color, ls=style, label=label))


def plot_refer_cases(
    world, cases: pd.DataFrame, cols: int = 4, title: str | None = None, save=None
) -> Figure:
    """Each case (a row of `refer_predictions`): the image, the true box (green) and the chosen proposal
    (red dashed when wrong, IoU ≤ 0.5; blue when right), titled with the phrase and the IoU."""
    if len(cases) == 0:
        raise ValueError("no referring-expression cases to draw")
    fig, axes = _grid(len(cases), cols)
    for ax, (_, c) in zip(axes, cases.iterrows()):
        ax.imshow(world.image(c["image_id"]))
        _box(ax, c["true_box"], "limegreen", "-", "true box")
        _box(ax, c["predicted_box"], "royalblue" if c["correct"] else "red", "--", "chosen region")
        ax.set_title(f"{_wrap(c['text'])}\nIoU {c['iou']:.2f}", fontsize=8)
    axes[0].legend(loc="lower left", fontsize=7, framealpha=0.8)
    return _finish(fig, title, save)


def ranking_table(scores: torch.Tensor, image_ids: Sequence[str], truth: str, k: int = 5) -> pd.DataFrame:
    """One caption's scores over a pool (M,) -> the top k images: rank, image_id, score, whether it is the truth."""
    s = torch.as_tensor(scores).flatten().float()
    order = torch.argsort(s, descending=True, stable=True)[:k].tolist()
    return pd.DataFrame({"rank": range(1, len(order) + 1), "image_id": [image_ids[i] for i in order],
                         "score": [float(s[i]) for i in order],
                         "true image": [image_ids[i] == truth for i in order]}).set_index("rank")  # fmt: skip


def plot_ranked_images(world, caption: str, ranking: pd.DataFrame, truth_rank: int | None = None,
                       save=None) -> Figure:  # fmt: skip
    """The top-ranked images of a caption (a `ranking_table`), the true image framed in green."""
    fig, axes = _grid(len(ranking), len(ranking), size=2.4)
    for ax, (rank, r) in zip(axes, ranking.iterrows()):
        ax.imshow(world.image(r["image_id"]))
        ax.set_title(f"#{rank}  score {r['score']:.2f}", fontsize=9,
                     color="darkgreen" if r["true image"] else "black")  # fmt: skip
        if r["true image"]:
            h, w = world.image(r["image_id"]).shape[:2]
            ax.add_patch(Rectangle((1, 1), w - 3, h - 3, fill=False, lw=4, ec="limegreen"))
    where = f" (true image ranked #{truth_rank})" if truth_rank is not None else ""
    fig.suptitle(_wrap(f"“{caption}”{where}", 110), fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    if save:
        fig.savefig(save, dpi=120)
    return fig


def plot_results(table: pd.DataFrame, columns: Sequence[str] | None = None, title: str | None = None,
                 save=None) -> Figure:  # fmt: skip
    """A `results_table` as grouped bars (one group per task metric), chance as a black tick."""
    columns = list(columns or [c for c in table.columns if c != "chance"])
    labels = [f"{t}\n{m}" for t, m in table.index]
    x = np.arange(len(table))
    width = 0.8 / max(len(columns), 1)
    fig = Figure(figsize=(max(6, 1.15 * len(table)), 3.6))
    ax = fig.subplots()
    for j, c in enumerate(columns):
        ax.bar(x + (j - (len(columns) - 1) / 2) * width, table[c].fillna(0).to_numpy(), width, label=c)
    if "chance" in table:
        ax.scatter(x, table["chance"].to_numpy(), marker="_", s=400, c="black", label="chance", zorder=3)
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("score")
    ax.legend(fontsize=8, ncol=len(columns) + 1)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    if save:
        fig.savefig(save, dpi=120)
    return fig


__all__ = ["results_table", "chance_of", "run_folder", "load_task_model", "task_heads", "vqa_predictions",
           "refer_predictions", "plot_vqa_cases", "plot_refer_cases", "ranking_table", "plot_ranked_images",
           "plot_results", "answer_type_table", "plot_vqa_files"]  # fmt: skip


# ------------------------------------------------------------------------------------------------ real data
def answer_type_table(results: dict[str, dict]) -> pd.DataFrame:
    """{row name: VQA metrics dict of a real-data run} -> VQA accuracy in percent, overall and per answer type
    (the `vqa_accuracy_<type>` keys), one row per run, with its questions and wall time."""
    rows = []
    for name, m in results.items():
        row = {"model": name, "all": 100 * m["vqa_accuracy"]}
        row.update(
            {k[len("vqa_accuracy_") :]: 100 * v for k, v in m.items() if k.startswith("vqa_accuracy_")}
        )
        row.update({"questions": m["n_eval"], "fine-tuning (s)": m["wall_time_s"]})
        rows.append(row)
    return pd.DataFrame(rows).set_index("model").round(1)


def plot_vqa_files(images: dict[str, str | Path], questions: dict[str, list[tuple[str, str]]], cols: int = 4,
                   title: str | None = None, size: float = 2.6) -> Figure:  # fmt: skip
    """Images from files, each titled with its name and a few (question, answer) pairs: a data set at a glance."""
    fig, axes = _grid(len(images), cols, size)
    for ax, (name, path) in zip(axes, images.items()):
        ax.imshow(Image.open(path).convert("RGB"))
        qa = "\n".join(_wrap(f"{q} → {a}", 40) for q, a in questions.get(name, [])[:3])
        ax.set_title(f"{name}\n{qa}", fontsize=7.5)
    return _finish(fig, title, None)
