"""Solutions to the exercises of notebook 05 · Fine-tuning (VQA where an exercise asks for every task).

At `cpu`, exercise 1 pretrains two more seeds (~15 minutes each) and fine-tunes them, exercise 2 fine-tunes VQA
for twice its budget, exercise 5 pretrains a single-stream model; 3 and 4 take seconds once notebook 05's runs exist.

    python solutions/05_finetuning.py [--profile cpu]
"""

from __future__ import annotations

import argparse
import statistics

import torch

from vilbert_lite.data.world import make_world
from vilbert_lite.pretrain.run import pretrain
from vilbert_lite.profiles import get_profile
from vilbert_lite.tasks import finetune
from vilbert_lite.viz import tasks as tv


def exercise_1(profile: str) -> None:
    scores = {"pretrained": [], "ViLBERT†": []}
    seeds = (0, 1) if profile == "smoke" else (0, 1, 2)  # two at smoke: the check stays fast
    for s in seeds:
        run = pretrain(profile, s, progress=False)
        scores["pretrained"].append(finetune("vqa", run, profile, s, progress=False)["vqa_accuracy"])
        scores["ViLBERT†"].append(finetune("vqa", None, profile, s, progress=False)["vqa_accuracy"])
    for k, v in scores.items():
        print(
            f"exercise 1: VQA {k:10s} over seeds {seeds}: {100 * statistics.mean(v):.1f} ± {100 * statistics.stdev(v):.1f} %"
        )


def exercise_2(profile: str, run) -> None:
    prof = get_profile(profile)
    epochs = prof.finetune_budgets.get("vqa", {}).get("epochs", prof.finetune.epochs)
    longer = {"epochs": 2 * epochs, "max_steps": None if profile != "smoke" else 2 * prof.finetune.max_steps}
    for label, over in (("budget", None), ("twice the budget", longer)):
        a = finetune("vqa", run, profile, 0, train_overrides=over, progress=False)["vqa_accuracy"]
        b = finetune("vqa", None, profile, 0, train_overrides=over, progress=False)["vqa_accuracy"]
        print(
            f"exercise 2: VQA at {label:16s}: pretrained {100 * a:.1f} %, ViLBERT† {100 * b:.1f} %, gap {100 * (a - b):+.1f}"
        )


def exercise_3(profile: str, run) -> None:
    world = make_world(profile, seed=0)
    m = finetune("vqa", run, profile, 0, progress=False)
    model, data = tv.load_task_model(tv.run_folder(m), world, "cpu")
    pred = tv.vqa_predictions(model, data, world)
    answers_of = pred.groupby("qtype")["answer"].agg(set)
    wrong = pred[pred["accuracy"] == 0]
    right_type = wrong.apply(lambda r: r["predicted"] in answers_of[r["qtype"]], axis=1)
    print(
        f"exercise 3: {len(wrong)} wrong answers, {int(right_type.sum())} of the right type but the wrong value"
    )


def exercise_4(profile: str, run) -> None:
    m = finetune("refer", run, profile, 0, progress=False)
    acc, bound = m["refer_accuracy"], m["refer_upper_bound"]
    print(
        f"exercise 4: refer accuracy {100 * acc:.1f} %, proposals' upper bound {100 * bound:.1f} %: "
        f"{100 * (1 - bound):.1f} points lost to the proposals, {100 * (bound - acc):.1f} to the scorer"
    )


def exercise_5(profile: str, run) -> None:
    run_ss = pretrain(profile, 0, model_kind="single_stream", progress=False)
    table = tv.results_table(
        {
            "vqa": {
                "ViLBERT": finetune("vqa", run, profile, 0, progress=False),
                "single-stream": finetune("vqa", run_ss, profile, 0, progress=False),
            }
        }
    )
    for col in ("ViLBERT", "single-stream", "chance"):
        print(f"exercise 5: VQA {col:14s} {100 * float(table[col].iloc[0]):.1f} %")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu", choices=("smoke", "cpu", "gpu"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    run = pretrain(args.profile, 0, progress=False)
    exercise_1(args.profile)
    exercise_2(args.profile, run)
    exercise_3(args.profile, run)
    exercise_4(args.profile, run)
    exercise_5(args.profile, run)


if __name__ == "__main__":
    main()
