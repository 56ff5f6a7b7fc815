"""The VCR-style task's designs side by side: ViLBERT† validation curves and the text-only control (images blanked)
for each question style, read from the curve files `studies/finetune_curves.py` wrote.

    .venv/bin/python studies/vcr_design.py     # -> reports/vcr_design/curves.md, curves.png

The curves come from (one thread each, seed 0, the `cpu` profile's batch and learning rate):
    S='{"vcr": {"per_scene": 4, "style": "STYLE"}}'
    .venv/bin/python studies/finetune_curves.py --tasks vcr --epochs E --threads 1 --task-data "$S" --tag=-vcr_STYLE
    ... the same with --blank-images (the text-only control)
style "relation" (the world's first set, four per scene) is the `vilbert_dagger-cpu.json` row of the budgets.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CURVES = ROOT / "reports" / "finetune_curves"
OUT = ROOT / "reports" / "vcr_design"
DESIGNS = {  # style -> (ViLBERT† curve file, text-only curve file or None)
    "relation": ("vilbert_dagger-cpu.json", None),
    "where": ("vilbert_dagger-vcr_where-cpu.json", "vilbert_dagger-blank-vcr_where-cpu.json"),
    "attribute": ("vilbert_dagger-vcr_attribute-cpu.json", "vilbert_dagger-blank-vcr_attribute-cpu.json"),
}
CHANCE = {"q2a": 0.25, "qa2r": 0.25, "q2ar": 0.0625}


def points(name: str) -> list[dict]:
    """Per epoch {"epoch", "q2a", "qa2r", "q2ar"} (validation: the first 256 val items = 128 questions)."""
    r = json.loads((CURVES / name).read_text())["tasks"]["vcr"]
    key = r["score"]  # the curve's own plateau metric sits under "val"
    return [
        {"epoch": p["epoch"], **{k: v for k, v in p.items() if k in CHANCE}, key: p["val"]}
        for p in r["curve"]
    ]


def test_scores(name: str) -> dict:
    return json.loads((CURVES / name).read_text())["tasks"]["vcr"]["test"]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    lines = ["| style | model | epochs | val Q→A by epoch | val QA→R by epoch | test Q→A | test QA→R | test Q→AR |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for style, files in DESIGNS.items():
        for model, name in zip(("ViLBERT†", "text-only"), files):
            if name is None or not (CURVES / name).exists():
                continue
            pts, test = points(name), test_scores(name)
            q2a = " ".join(f"{p['q2a']:.2f}" for p in pts if "q2a" in p)
            qa2r = " ".join(f"{p['qa2r']:.2f}" for p in pts if "qa2r" in p) or "not logged"
            lines.append(f"| {style} | {model} | {len(pts)} | {q2a} | {qa2r} | {test['q2a']:.3f} | "
                         f"{test['qa2r']:.3f} | {test['q2ar']:.3f} |")  # fmt: skip
            for ax, metric in zip(axes, ("q2a", "qa2r")):
                xs = [p["epoch"] for p in pts if metric in p]
                ax.plot(xs, [p[metric] for p in pts if metric in p], marker="o", ms=3,
                        ls="-" if model == "ViLBERT†" else ":", label=f"{style}, {model}")  # fmt: skip
    for ax, metric, title in zip(axes, ("q2a", "qa2r"), ("Q→A", "QA→R")):
        ax.axhline(CHANCE[metric], color="grey", lw=0.8, ls="--")
        ax.axhline(CHANCE[metric] + 0.20, color="grey", lw=0.8, ls=":")
        ax.set(title=f"{title} (val; dashed: chance, dotted: chance + 20)", xlabel="epoch", ylim=(0, 1))
    axes[0].set_ylabel("accuracy")
    axes[1].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(OUT / "curves.png", dpi=110)
    (OUT / "curves.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
