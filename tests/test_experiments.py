import pytest

from vilbert_lite import experiments, reports


def test_depth_overrides_follow_the_official_pattern():
    d = experiments.depth_overrides("cpu")  # `mini`: 6 text layers -> 1, 2, 3, 4 co-attention layers
    assert [d[k]["v_num_hidden_layers"] for k in (2, 4, 6, 8)] == [1, 2, 3, 4]
    assert d[6]["v_biattention_id"] == [0, 1, 2] and d[6]["t_biattention_id"] == [3, 4, 5]


@pytest.fixture(scope="module")
def smoke_rows(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    rows = experiments.run_cell("t1", "vilbert", "smoke", 0, tasks=("vqa", "zeroshot"), root=root)
    rows += experiments.run_cell("t1", "vilbert†", "smoke", 0, pretrained=False, tasks=("vqa", "zeroshot"),
                                 root=root)  # fmt: skip
    return rows


def test_cells_give_long_rows_in_percent(smoke_rows):
    import pandas as pd

    df = pd.DataFrame(smoke_rows)
    assert set(df.column) == {"vqa_accuracy", "zs_r@1", "zs_r@5", "zs_r@10"}
    assert set(df.row) == {"vilbert", "vilbert†"} and (df.value >= 0).all() and (df.value <= 100).all()
    s = reports.summarize(df)
    assert len(s) == 8 and (s.n == 1).all()
