"""The published numbers of Lu et al. (2019), Tables 1-3, keyed by our metric names.

Columns: VQA test-dev; VCR Q->A, QA->R, Q->AR; RefCOCO+ val; Flickr30k image retrieval R@1/5/10 and zero-shot
R@1/5/10. (RefCOCO+ testA/testB are left out: our referring task has one split.) None = not reported.
"""

from __future__ import annotations

COLUMNS = [
    "vqa_accuracy",
    "q2a",
    "qa2r",
    "q2ar",
    "refer_accuracy",
    "r@1",
    "r@5",
    "r@10",
    "zs_r@1",
    "zs_r@5",
    "zs_r@10",
]


def _row(*values):
    return dict(zip(COLUMNS, values))


TABLE1 = {  # Table 1: task-specific baselines ("†" = no multimodal pretraining)
    "single_stream†": _row(65.90, 68.15, 68.89, 47.27, 65.64, None, None, None, None, None, None),
    "single_stream": _row(68.85, 71.09, 73.93, 52.73, 69.21, None, None, None, None, None, None),
    "vilbert†": _row(68.93, 69.26, 71.01, 49.48, 68.61, 45.50, 76.78, 85.02, 0.00, 0.00, 0.00),
    "vilbert": _row(70.55, 72.42, 74.47, 54.04, 72.34, 58.20, 84.90, 91.52, 31.86, 61.12, 72.80),
}
TABLE2 = {  # Table 2: number of co-attention layers (visual stream depth)
    2: _row(69.92, 72.44, 74.80, 54.40, 71.74, 55.68, 84.26, 90.56, 26.14, 56.04, 68.80),
    4: _row(70.22, 72.45, 74.00, 53.82, 72.07, 55.38, 84.10, 90.62, 26.28, 54.34, 66.08),
    6: _row(70.55, 72.42, 74.47, 54.04, 72.34, 58.20, 84.90, 91.52, 31.86, 61.12, 72.80),
    8: _row(70.47, 72.33, 74.15, 53.79, 71.66, 58.78, 85.60, 91.42, 32.80, 63.38, 74.62),
}
TABLE3 = {  # Table 3: fraction of Conceptual Captions used for pretraining
    0.0: _row(68.93, 69.26, 71.01, 49.48, 68.61, 45.50, 76.78, 85.02, 0.00, 0.00, 0.00),
    0.25: _row(69.82, 71.61, 73.00, 52.66, 69.90, 53.08, 80.80, 88.52, 20.40, 48.54, 62.06),
    0.5: _row(70.30, 71.88, 73.60, 53.03, 71.16, 54.84, 83.62, 90.10, 26.76, 56.26, 68.80),
    1.0: _row(70.55, 72.42, 74.47, 54.04, 72.34, 58.20, 84.90, 91.52, 31.86, 61.12, 72.80),
}
TABLES = {"table1": TABLE1, "table2": TABLE2, "table3": TABLE3}  # by the names notebooks 07-09 use

# 12-in-1 (Lu et al. 2020) ablation, as the 12-in-1 paper (arXiv 1912.02315) reports it: the task groups G1 (vocabulary-based
# VQA), G2 (caption-based retrieval), G3 (referring expressions), G4 (multimodal verification) and the
# all-task average, keyed by the rows of notebook 10 (repro.multitask_table.ROWS). This summary has no single-task or
# "MT + finetune" row.
TWELVE_IN_ONE_COLUMNS = ["G1", "G2", "G3", "G4", "average"]
TWELVE_IN_ONE = {  # "token + DSG": one token per data set, with Dynamic Stop-and-Go (the paper's model)
    "token + DSG": dict(zip(TWELVE_IN_ONE_COLUMNS, (56.35, 63.61, 75.52, 77.61, 69.08))),
    "token per head": dict(zip(TWELVE_IN_ONE_COLUMNS, (55.95, 61.48, 75.35, 77.37, 68.52))),
    "+ DSG": dict(zip(TWELVE_IN_ONE_COLUMNS, (55.67, 62.55, 75.38, 76.73, 68.53))),  # w/o task token
    "+ task token": dict(zip(TWELVE_IN_ONE_COLUMNS, (55.50, 62.92, 75.24, 76.31, 68.52))),  # w/o DSG
    "curriculum": dict(zip(TWELVE_IN_ONE_COLUMNS, (54.68, 61.21, 75.19, 76.70, 67.24))),
    "anti-curriculum": dict(zip(TWELVE_IN_ONE_COLUMNS, (55.82, 59.58, 73.69, 75.94, 67.98))),
    "vanilla": dict(zip(TWELVE_IN_ONE_COLUMNS, (54.09, 61.45, 75.28, 76.71, 67.92))),
}
# the seed's summary: 12 single-task models (~3 billion parameters) replaced by one (~270 million) that is
# 2.05 points better on average
TWELVE_IN_ONE_PARAMETERS = {"single-task": 3_000_000_000, "multi-task": 270_000_000}
TWELVE_IN_ONE_GAIN_OVER_SINGLE_TASK = 2.05
