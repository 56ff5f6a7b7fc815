"""`vilbert-lite extract`: region features of every image of a folder into a feature store, fault-tolerant
and resumable."""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vilbert_lite.data.formats import image_files
from vilbert_lite.data.regions import RegionExtractor
from vilbert_lite.data.store import REPORT, change_summary, extract_features
from vilbert_lite.errors import UserError


def cli(argv: list[str]) -> int:
    """`vilbert-lite extract --images DIR --out FEATS`: region features of every image in DIR, cached.

    Unreadable images are skipped, listed at the end and in the store's skipped.jsonl (exit status 1);
    `--on-error stop` stops at the first one instead. A killed run, run again, continues where it stopped."""
    ap = argparse.ArgumentParser(prog="vilbert-lite extract", description=cli.__doc__)
    ap.add_argument("--images", required=True, help="folder of .jpg/.jpeg/.png images (image_id = file stem)")
    ap.add_argument("--out", required=True, help="feature store root (a subfolder per extractor setting)")
    ap.add_argument("--max-regions", type=int, default=36)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--on-error", choices=["skip", "stop"], default="skip",
                    help="an unreadable image: skip and report it (default), or stop")  # fmt: skip
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    return extract_folder(
        args.images,
        args.out,
        lambda: RegionExtractor(args.max_regions, args.device, args.image_size),
        args.batch_size,
        args.on_error,
        progress=not args.no_progress,
    )


def extract_folder(
    folder: str | Path,
    out: str | Path,
    make_extractor: Callable[[], Any],
    batch_size: int = 16,
    on_error: str = "skip",
    progress: bool = True,
) -> int:
    """The body of `vilbert-lite extract`: every image of `folder` into the store under `out`, then a summary
    on stdout -> exit status 0, or 1 when images were skipped (listed, and in the store's skipped.jsonl).
    The folder is checked before `make_extractor()` loads the model."""
    if batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {batch_size}")
    files = image_files(folder)
    if not files:
        raise UserError(f"{folder}: no .jpg/.jpeg/.png images (subfolders are not searched)")
    stems: dict[str, list[str]] = {}
    for p in files:
        stems.setdefault(p.stem, []).append(p.name)
    clashes = [names for names in stems.values() if len(names) > 1]
    if clashes:
        raise UserError(
            f"{folder}: image ids are file stems and must be unique; these files share one: "
            + "; ".join(", ".join(names) for names in clashes)
        )
    t0 = time.time()
    extractor = make_extractor()
    items = [(p.stem, p, None) for p in files]
    with warnings.catch_warnings():  # the summary below says what changed
        warnings.filterwarnings("ignore", message=".*(changed, re-extracted|vanished, dropped)")
        store = extract_features(items, out, extractor, batch_size, None, progress, on_error=on_error)
    cached = len(files) - store.extracted - len(store.skipped)
    changes = f"; {change_summary(store)}" if store.changed or store.vanished else ""
    print(
        f"{len(files)} images, {store.extracted} extracted, {cached} cached, {len(store.skipped)} skipped"
        f"{changes}; store {store.path} ({len(store)} images) in {time.time() - t0:.1f}s"
    )
    if not store.skipped:
        return 0
    print(f"skipped {len(store.skipped)} unreadable image(s), listed in {store.path / REPORT}:")
    for r in store.skipped:
        print(f"  {r['image_id']}  {r['path']}: {r['reason']}")
    return 1
