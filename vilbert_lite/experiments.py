"""The cells of the paper's Tables 1-3 as runs: each cell pretrains (or not) and fine-tunes every task.

A cell returns "long" rows {table, row, seed, column, value (percent)} that `reports.summarize` and
`reports.claims` read. Runs are folders keyed by their config, so a cell computed once (for Table 1, say)
is reused by every other table that needs it: ViLBERT at full depth and 100% of the corpus is the same run
in all three tables, and ViLBERT† is Table 3's 0% row.
"""

from __future__ import annotations

from pathlib import Path

from .config import ViLBertConfig, co_attention_ids
from .profiles import get_profile

TASKS = ("vqa", "vcr", "refer", "retrieval", "zeroshot", "nlvr")
# (task, metric in metrics.json) -> column of paper.COLUMNS (plus nlvr_accuracy, which the paper lacks)
COLUMN_OF = {
    ("vqa", "vqa_accuracy"): "vqa_accuracy", ("vcr", "q2a"): "q2a", ("vcr", "qa2r"): "qa2r",
    ("vcr", "q2ar"): "q2ar", ("refer", "refer_accuracy"): "refer_accuracy", ("retrieval", "r@1"): "r@1",
    ("retrieval", "r@5"): "r@5", ("retrieval", "r@10"): "r@10", ("zeroshot", "r@1"): "zs_r@1",
    ("zeroshot", "r@5"): "zs_r@5", ("zeroshot", "r@10"): "zs_r@10", ("nlvr", "nlvr_accuracy"): "nlvr_accuracy",
}  # fmt: skip
SINGLE_STREAM_TASKS = ("vqa", "vcr", "refer", "nlvr")  # the paper reports no retrieval for the single stream


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
             root: str | Path | None = None) -> list[dict]:  # fmt: skip
    """Pretrain (unless not `pretrained`) and fine-tune `tasks` for one table cell and seed -> long rows."""
    from .pretrain import pretrain
    from .runs import runs_root
    from .tasks import finetune

    root = Path(root) if root is not None else runs_root()
    init, config = None, None
    if pretrained and fraction > 0:
        init = pretrain(profile, seed, out=root, corpus_fraction=fraction, config_overrides=config_overrides,
                        progress=progress, model_kind=model_kind)  # fmt: skip
        config = ViLBertConfig.from_json_file(init / "model" / "config.json")
    elif config_overrides:
        prof = get_profile(profile)
        config = ViLBertConfig.preset(prof.model_preset, **config_overrides)
    rows = []
    for task in tasks:
        if task == "zeroshot" and init is None and model_kind != "vilbert":
            continue
        m = finetune(
            task, init, profile, seed, backbone=model_kind, config=config, root=root, progress=progress
        )
        for (t, metric), column in COLUMN_OF.items():
            if t == task and metric in m:
                rows.append(
                    dict(table=table, row=row, seed=seed, column=column, value=100.0 * float(m[metric]))
                )
    return rows
