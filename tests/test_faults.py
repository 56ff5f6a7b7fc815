"""A bad item never costs the rest (issue #16), driven through the real command line in subprocesses:

- `vilbert-lite extract` on a folder with a truncated PNG stores the good images, reports the bad one (one line
  in skipped.jsonl) and exits 1;
- greyscale, 16-bit, RGBA, palette and CMYK images are converted; an empty file and a text file named .jpg are
  reported, not crashed over;
- `kill -9` in the middle of an extraction (the test hook VILBERT_LITE_TEST_KILL_AFTER, see data/store.py), then
  the same command again: the same store as an uninterrupted run, byte for byte;
- a flipped byte in a shard is detected, named and rebuilt (again byte for byte);
- every command reports a bad argument as one line, `vilbert-lite <command>: error: ...`, exit status 2, no
  traceback.
In-process, through the same `cli.main` (no interpreter start-up): `--on-error stop`, argparse errors, --debug,
programming errors; and image conversions, real-data fine-tuning gaps (named before training, skipped on
request), a torn metrics line left by a killed training run.
Tiny images (40 x 56) and few of them: the subprocesses dominate the time (each one imports torch).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vilbert_lite import cli
from vilbert_lite.data.regions import UnreadableImageError, load_image
from vilbert_lite.data.store import FeatureStore
from vilbert_lite.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
GOOD = ["im0", "im1", "im3", "im4"]


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m vilbert_lite ARGS` with one thread."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "vilbert_lite", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=300)  # fmt: skip


def extract(folder: Path, out: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`vilbert-lite extract --images FOLDER --out OUT ARGS` without a progress bar."""
    return run("extract", "--images", str(folder), "--out", str(out), "--no-progress", *args, env=env)


def photo(seed: int, h: int = 40, w: int = 56) -> np.ndarray:
    """A tiny 'photo': a noisy background with two flat rectangles."""
    rng = np.random.default_rng(seed)
    img = (rng.integers(40, 200, 3) + rng.normal(0, 12, (h, w, 3))).clip(0, 255)
    for _ in range(2):
        y, x = rng.integers(0, h // 2), rng.integers(0, w // 2)
        img[y : y + h // 3, x : x + w // 3] = rng.integers(0, 256, 3)
    return img.astype(np.uint8)


def png16(rgb: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG (Pillow cannot write one), written by hand."""
    h, w, _ = rgb.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + rgb[y].astype(">u2").tobytes() for y in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))  # fmt: skip


def store_files(root: Path) -> dict[str, bytes]:
    """Every file of the one store under `root`, by name."""
    (path,) = [p.parent for p in root.glob("*/index.json")]
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Five tiny photos; im2.png is cut to 300 bytes."""
    d = tmp_path_factory.mktemp("photos")
    for i in range(5):
        Image.fromarray(photo(i)).save(d / f"im{i}.png")
    (d / "im2.png").write_bytes((d / "im2.png").read_bytes()[:300])
    return d


@pytest.fixture(scope="module")
def reference(folder, tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """An uninterrupted `extract` of the folder, batches of 2."""
    out = tmp_path_factory.mktemp("reference")
    return extract(folder, out, "--batch-size", "2"), out


# ------------------------------------------------------------------------------------------- extraction
def test_unreadable_image_is_skipped_and_reported(reference):
    proc, out = reference
    assert proc.returncode == 1, proc.stderr
    assert "5 images, 4 extracted, 0 cached, 1 skipped" in proc.stdout and "Traceback" not in proc.stderr
    assert "im2.png: cannot decode: image file is truncated (300 bytes)" in proc.stdout
    store = FeatureStore.open(out)
    assert store.ids() == GOOD and all(len(store.get(i).boxes) >= 1 for i in GOOD)
    lines = (store.path / "skipped.jsonl").read_text().splitlines()
    assert len(lines) == 1
    row = json.loads(lines[0])
    assert row["image_id"] == "im2" and row["path"].endswith("im2.png") and "truncated" in row["reason"]


def test_on_error_stop_fails_fast_and_keeps_what_was_done(folder, tmp_path, capsys):
    argv = ["--images", str(folder), "--out", str(tmp_path), "--batch-size", "2", "--no-progress"]
    assert cli.main(["extract", *argv, "--on-error", "stop"]) == 2  # in-process: the same main, no startup
    assert capsys.readouterr().err == (
        f"vilbert-lite extract: error: image 'im2' ({folder / 'im2.png'}): cannot decode: image file is truncated "
        "(300 bytes)\n"
    )
    assert FeatureStore.open(tmp_path).ids() == ["im0", "im1"]  # the batch before the bad image is committed


def test_kill_9_then_resume_gives_the_same_store_byte_for_byte(folder, reference, tmp_path):
    killed = extract(folder, tmp_path, "--batch-size", "2",
                 env={"VILBERT_LITE_TEST_KILL_AFTER": "3"})  # fmt: skip
    assert killed.returncode == -9  # SIGKILL, after extracting im3, before committing the batch [im2, im3]
    assert FeatureStore.open(tmp_path).ids() == ["im0", "im1"]  # committed as a part, nothing half-written
    resumed = extract(folder, tmp_path, "--batch-size", "2")
    assert resumed.returncode == 1 and "5 images, 2 extracted, 2 cached, 1 skipped" in resumed.stdout
    assert store_files(tmp_path) == store_files(reference[1])


def test_corrupt_shard_is_detected_named_and_rebuilt(folder, reference, tmp_path):
    shutil.copytree(reference[1], tmp_path, dirs_exist_ok=True)
    (shard,) = tmp_path.glob("*/shard-00000.safetensors")
    data = bytearray(shard.read_bytes())
    data[-100] ^= 0xFF  # one byte of the features
    shard.write_bytes(bytes(data))
    proc = extract(folder, tmp_path, "--batch-size", "2")
    assert proc.returncode == 1, proc.stderr
    warning = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert len(warning) == 1 and "shard-00000.safetensors failed the checksum check" in warning[0]
    assert (
        warning[0].startswith("vilbert-lite extract: warning: ")
        and "re-extracting their 4 images" in warning[0]
    )
    assert "4 extracted, 0 cached, 1 skipped" in proc.stdout
    assert store_files(tmp_path) == store_files(reference[1])


def test_odd_image_modes_are_converted_and_non_images_reported(tmp_path):
    d = tmp_path / "odd"
    d.mkdir()
    rgb = photo(7)
    Image.fromarray(rgb).convert("L").save(d / "grey.png")
    Image.fromarray(rgb).convert("RGBA").save(d / "rgba.png")
    Image.fromarray(rgb).convert("P").save(d / "palette.png")
    Image.fromarray(rgb).convert("CMYK").save(d / "cmyk.jpg")
    (d / "rgb16.png").write_bytes(png16(rgb.astype(np.uint16) * 257))
    Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(d / "grey16.png")
    (d / "empty.png").write_bytes(b"")
    (d / "notes.jpg").write_text("not a picture\n")
    proc = extract(d, tmp_path / "feats", "--batch-size", "4")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "8 images, 6 extracted, 0 cached, 2 skipped" in proc.stdout
    store = FeatureStore.open(tmp_path / "feats")
    assert sorted(store.ids()) == ["cmyk", "grey", "grey16", "palette", "rgb16", "rgba"]
    reasons = {r["image_id"]: r["reason"] for r in store.report()}
    assert reasons == {
        "empty": "empty file (0 bytes)",
        "notes": "not an image file Pillow can read (14 bytes)",
    }


def test_image_conversions(tmp_path):
    rgb = photo(3)
    grey16 = rgb[..., 0].astype(np.uint16) * 257
    Image.fromarray(grey16).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")  # really 16-bit on disk
    np.testing.assert_array_equal(load_image(tmp_path / "g16.png"), np.stack([rgb[..., 0]] * 3, -1))
    (tmp_path / "c16.png").write_bytes(png16(rgb.astype(np.uint16) * 257))
    np.testing.assert_array_equal(load_image(tmp_path / "c16.png"), rgb)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    rgba[:10, :10, 3] = 0  # transparent corner: white, whatever colour it holds
    Image.fromarray(rgba).save(tmp_path / "a.png")
    got = load_image(tmp_path / "a.png")
    assert (got[:10, :10] == 255).all() and np.array_equal(got[10:], rgb[10:])
    for mode in ("1", "L", "LA", "P", "PA", "CMYK", "YCbCr"):
        buf = io.BytesIO()
        Image.fromarray(rgb).convert(mode).save(buf, "TIFF")
        assert load_image(Image.open(buf)).shape == (*rgb.shape[:2], 3), mode
    np.testing.assert_array_equal(load_image(grey16), np.stack([rgb[..., 0]] * 3, -1))  # 16-bit arrays too
    (tmp_path / "cut.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 40)
    with pytest.raises(UnreadableImageError, match=r"'cut' \(.*cut.jpg\): .*\(44 bytes\)"):
        load_image(tmp_path / "cut.jpg")


# ------------------------------------------------------------------------------------------- one-line errors
@pytest.mark.parametrize(
    "argv, message",
    [
        (["extract", "--images", "TMP/missing", "--out", "TMP/feats"], "image folder not found: TMP/missing"),
        (["pretrain", "--profile", "smoke", "--out", "TMP", "--train", '{"epochs": 0}'],
         "TrainConfig.epochs: must be >= 1, got 0"),
        (["finetune", "vqa", "--init", "TMP/no-run"], "--init TMP/no-run: not a pretraining run folder"),
        (["bench", "speed"], "unknown benchmark 'speed'; expected one of: model, extract, pretrain, retrieval"),
    ],
)  # fmt: skip
def test_bad_argument_is_one_line_with_exit_status_2(argv, message, tmp_path):
    proc = run(*(a.replace("TMP", str(tmp_path)) for a in argv))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"vilbert-lite {argv[0]}: error: ")
    assert message.replace("TMP", str(tmp_path)) in lines[0] and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "argv, line",
    [
        (["extract", "--images", "x"],
         "vilbert-lite extract: error: the following arguments are required: --out (see `vilbert-lite extract --help`)"),
        (["pretrain", "--fraction", "2"], "vilbert-lite pretrain: error: argument --fraction: expected a number in "
                                          "[0, 1], got '2' (see `vilbert-lite pretrain --help`)"),
        (["finetune", "captioning", "--init", "none"],
         "vilbert-lite finetune: error: unknown task 'captioning'; valid tasks: vqa, vcr, refer, retrieval, zeroshot, nlvr"),
        (["bench"], "vilbert-lite bench: error: which benchmark? expected one of: model, extract, pretrain, "),
    ],
)  # fmt: skip
def test_argparse_and_other_user_errors_in_process(argv, line, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(line) and err.count("\n") == 1


def test_debug_shows_the_traceback(monkeypatch):
    with pytest.raises(UserError, match="unknown benchmark"):
        cli.main(["bench", "speed", "--debug"])
    monkeypatch.setenv("VILBERT_LITE_DEBUG", "1")
    with pytest.raises(UserError, match="unknown benchmark"):
        cli.main(["bench", "speed"])


def test_programming_errors_keep_their_traceback(monkeypatch, capsys):
    monkeypatch.setitem(cli.COMMANDS, "boom", (f"{__name__}:_boom", ""))
    with pytest.raises(ZeroDivisionError):
        cli.main(["boom"])
    assert cli.main(["boom", "user"]) == 2
    assert capsys.readouterr().err == "vilbert-lite boom: error: line one; line two\n"


def _boom(argv):
    if argv:
        raise UserError("line one\n  line two")
    return 1 / 0


# ------------------------------------------------------------------------------------------- fine-tuning gaps
class FakeExtractor:
    """Colour statistics of each box, projected to 64-d: region features without the CNN (fast)."""

    settings = {"fake_extractor": "faults"}

    def extract_many(self, items, batch_size=16, progress=False, total=None):
        from vilbert_lite.data.items import RegionFeatures

        proj = np.random.default_rng(0).normal(0, 1, (6, 64)).astype(np.float32)
        for image_id, image, _ in items:
            img = load_image(image, image_id).astype(np.float32) / 255
            H, W = img.shape[:2]
            boxes = np.array([[0, 0, W, H], [0, 0, W / 2, H / 2]], np.float32)
            stats = [np.concatenate([img[: int(y2), : int(x2)].reshape(-1, 3).mean(0), [x2 / W, y2 / H, 1]])
                     for _, _, x2, y2 in boxes]  # fmt: skip
            feats = np.tanh(np.array(stats, np.float32) @ proj)
            yield RegionFeatures(str(image_id), H, W, boxes, feats, np.full((2, 10), 0.1, np.float32))


def vqa_files(d: Path, split: str, answers: dict[int, str]) -> tuple[Path, Path]:
    """Questions about images 1-4 (two each) with the given answer per image."""
    qs = [{"question_id": 10 * i + k, "image_id": i, "question": f"what is in picture {i}?"}
          for i in answers for k in range(2)]  # fmt: skip
    anns = [{"question_id": q["question_id"], "image_id": q["image_id"],
             "answers": [{"answer": answers[q["image_id"]]}] * 10} for q in qs]  # fmt: skip
    (d / f"{split}_q.json").write_text(json.dumps({"questions": qs}))
    (d / f"{split}_a.json").write_text(json.dumps({"annotations": anns}))
    return d / f"{split}_q.json", d / f"{split}_a.json"


def test_finetune_names_its_gaps_before_training_and_skips_them_on_request(tmp_path, monkeypatch):
    from vilbert_lite.tasks import finetune

    monkeypatch.setenv("VILBERT_LITE_CACHE", str(tmp_path / "cache"))
    images = tmp_path / "images"
    images.mkdir()
    for i in (1, 2, 4):
        Image.fromarray(photo(i)).save(images / f"COCO_val2014_{i:012d}.jpg")
    (images / "COCO_val2014_000000000004.jpg").write_bytes(b"\xff\xd8\xff")  # cut: unreadable; 3 has no file
    tq, ta = vqa_files(tmp_path, "train", {1: "cat", 2: "dog", 3: "cat", 4: "dog"})
    vq, va = vqa_files(tmp_path, "val", {1: "cat", 2: "zebra", 3: "dog", 4: "cat"})
    paths = dict(train_questions=tq, train_annotations=ta, train_images=images, val_questions=vq,
                 val_annotations=va, val_images=images)  # fmt: skip
    kw = dict(extractor=FakeExtractor(), progress=False, train_overrides={"epochs": 1}, **paths)
    with pytest.raises(UserError) as e:
        finetune("vqa", None, "smoke", 0, out=tmp_path / "run", data="vqa_v2", **kw)
    msg = str(e.value)
    assert "train: 2 questions whose image has no file: question 30 (image 3: no image file" in msg
    assert "train: 2 questions whose image file cannot be read: question 40 (image 4: " in msg
    assert "val: 2 questions with no answer in the training vocabulary: question 20" in msg
    assert "--skip-gaps" in msg and not (tmp_path / "run" / "metrics.json").exists()
    with pytest.warns(UserWarning, match="left out"):
        m = finetune("vqa", None, "smoke", 0, out=tmp_path / "run", data="vqa_v2", skip_gaps=True, **kw)
    assert m["n_train"] == 4 and m["n_eval"] == 2  # images 1, 2; val without image 2 ('zebra' is unknown)
    gaps = [json.loads(x) for x in (tmp_path / "run" / "gaps.jsonl").read_text().splitlines()]
    assert len(gaps) == 10 and {g["kind"] for g in gaps} == {"no_image", "unreadable", "oov"}


# ------------------------------------------------------------------------------------------- training runs
def test_a_torn_metrics_line_from_a_killed_run_does_not_stop_the_resume(tmp_path):
    """A run dies at step 5 (checkpoint of step 4 kept) while appending a metrics line; the resume drops the
    torn line and ends with the weights of an uninterrupted run."""
    from vilbert_lite.train.engine import train

    data = [{"x": torch.tensor([float(i), 1.0]), "y": torch.tensor([float(i % 2)])} for i in range(8)]
    calls = {"n": 0}

    def loss_fn(model, batch, die_at=None):
        calls["n"] += 1
        if calls["n"] == die_at:
            raise RuntimeError("killed")
        return ((model(batch["x"]) - batch["y"]) ** 2).mean(), {}

    cfg = {"epochs": 2, "batch_size": 2, "ckpt_every": 2, "log_every": 1, "device": "cpu"}
    torch.manual_seed(0)
    whole = torch.nn.Linear(2, 1)
    train(whole, data, None, loss_fn, cfg, tmp_path / "whole", progress=False)
    torch.manual_seed(0)
    model, calls["n"] = torch.nn.Linear(2, 1), 0
    with pytest.raises(RuntimeError, match="killed"):
        train(model, data, None, lambda m, b: loss_fn(m, b, die_at=5), cfg, tmp_path / "run", progress=False)
    with open(tmp_path / "run" / "metrics.jsonl", "a") as f:
        f.write('{"kind": "train", "st')  # what a kill -9 in the middle of append_jsonl leaves
    torch.manual_seed(0)
    resumed = torch.nn.Linear(2, 1)
    train(resumed, data, None, loss_fn, cfg, tmp_path / "run", progress=False)
    assert torch.equal(resumed.weight, whole.weight) and torch.equal(resumed.bias, whole.bias)
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "train"] == list(range(1, 9))
