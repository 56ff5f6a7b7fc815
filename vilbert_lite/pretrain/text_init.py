"""Where the text stream starts (`--text-init`): the bundled MiniLM BERT, a local BERT folder, a hub name, or
random; checked against the model before any data work."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from vilbert_lite.data.tokenize import bert_model_path
from vilbert_lite.errors import UserError, one_line
from vilbert_lite.model.config import ViLBertConfig

# ------------------------------------------------------------------------------------------------- text init
# BERT sizes that must equal the text stream's (ViLBertModel.init_text_from_bert checks the same)
TEXT_INIT_SIZES = ("hidden_size", "num_attention_heads", "intermediate_size", "vocab_size", "type_vocab_size")


@dataclass(frozen=True)
class TextInit:
    """Where the text stream starts from (see `resolve_text_init`).

    kind: "random", "bundled" (the MiniLM BERT shipped with the tokenizer), "folder" (a local Hugging Face BERT
    folder) or "hub" (a hub name, resolved to its snapshot in the local Hugging Face cache). asked: what was
    passed (None: the profile's choice). sizes: the BERT's config.json sizes; digest: sha256 of its weights."""

    asked: str | None
    kind: str
    path: Path | None = None
    sizes: dict = field(default_factory=dict)
    digest: str | None = None
    commit: str | None = None


def _hf_offline() -> bool:
    """True when HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE forbids downloads."""
    from huggingface_hub import constants  # only a BERT from the hub needs the hub client

    flags = (os.environ.get(k, "").upper() for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return constants.HF_HUB_OFFLINE or any(f in ("1", "ON", "YES", "TRUE") for f in flags)


def _weight_files(folder: Path, label: str) -> list[Path]:
    """The weights of a Hugging Face folder: its *.safetensors, else its pytorch_model*.bin."""
    safe = sorted(folder.glob("*.safetensors"))
    files = safe or sorted(folder.glob("pytorch_model*.bin"))
    if not files:
        raise UserError(f"{label}: {folder} holds no model.safetensors or pytorch_model.bin; expected a "
                        "Hugging Face BERT folder (config.json + weights, as save_pretrained writes)")  # fmt: skip
    return files


def _weights_digest(folder: Path, label: str) -> str:
    """sha256 over the names and bytes of a folder's weight files: other weights, another digest."""
    h = hashlib.sha256()
    for f in _weight_files(folder, label):
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return "sha256:" + h.hexdigest()


def _bert_sizes(folder: Path, label: str) -> dict:
    """The sizes of a BERT folder's config.json that decide whether it fits a text stream."""
    from transformers import BertConfig  # heavy: only a chosen BERT needs it

    cfg = folder / "config.json"
    if not cfg.is_file():
        raise UserError(f"{label}: {folder} has no config.json; expected a Hugging Face BERT folder "
                        "(config.json + weights, as BertModel.save_pretrained writes)")  # fmt: skip
    model_type = json.loads(cfg.read_text()).get("model_type", "bert")
    if model_type != "bert":
        raise UserError(f"{label}: {cfg} is a {model_type!r} model; the text stream starts from a BERT")
    c = BertConfig.from_pretrained(str(folder), local_files_only=True)
    return {k: getattr(c, k) for k in (*TEXT_INIT_SIZES, "num_hidden_layers", "max_position_embeddings")}


def _hub_snapshot(name: str) -> Path:
    """A hub name -> its snapshot folder (config.json + weights) in the local Hugging Face cache, downloaded
    there first unless HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE is set."""
    from huggingface_hub import snapshot_download  # only a BERT from the hub needs the hub client
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError

    offline = _hf_offline()
    try:
        folder = Path(snapshot_download(name, allow_patterns=["config.json", "*.safetensors*"],
                                        local_files_only=offline))  # fmt: skip
        if not any(folder.glob("*.safetensors")):  # an older repository: PyTorch pickles only
            folder = Path(snapshot_download(name, allow_patterns=["config.json", "pytorch_model*.bin*"],
                                            local_files_only=offline))  # fmt: skip
    except (LocalEntryNotFoundError, HfHubHTTPError, HFValidationError, OSError, ValueError) as e:
        if offline:
            raise UserError(
                f"--text-init {name}: not a local folder and not in the local Hugging Face cache, and it "
                "cannot be downloaded offline (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE is set); pass a local "
                "BERT folder instead: --text-init /path/to/bert (config.json + weights)"
            ) from e
        raise UserError(f"--text-init {name}: not a local folder, and the Hugging Face hub cannot give it "
                        f"({one_line(e)}); pass a local BERT folder, a hub name such as bert-base-uncased, "
                        "'bundled' or 'random'") from e  # fmt: skip
    return folder


def resolve_text_init(value: str | None, profile_wants_bert: bool = False) -> TextInit:
    """--text-init -> TextInit, before any data work: None (the profile's choice: "bundled" when
    `profile_wants_bert`, else "random"), "bundled", "random", a local Hugging Face BERT folder, or a hub name
    such as bert-base-uncased (from the local Hugging Face cache, downloaded unless offline)."""
    choice = value if value is not None else ("bundled" if profile_wants_bert else "random")
    label = f"--text-init {choice}"
    if choice == "random":
        return TextInit(value, "random")
    if choice == "bundled":
        path, kind = bert_model_path(), "bundled"
    elif Path(choice).expanduser().exists():
        path, kind = Path(choice).expanduser().resolve(), "folder"
        if not path.is_dir():
            raise UserError(
                f"{label}: not a folder; expected a Hugging Face BERT folder (config.json + weights)"
            )
    elif choice.startswith((".", "/", "~")) or "\\" in choice or choice.count("/") > 1:
        raise UserError(f"{label}: no such folder; pass a local Hugging Face BERT folder (config.json + "
                        "weights), a hub name such as bert-base-uncased, 'bundled' or 'random'")  # fmt: skip
    else:
        path, kind = _hub_snapshot(choice), "hub"
    commit = path.name if kind == "hub" and path.parent.name == "snapshots" else None
    return TextInit(value, kind, path, _bert_sizes(path, label), _weights_digest(path, label), commit)


def check_text_init(text: TextInit, config: ViLBertConfig, where: str, profile: str | None = None,
                    model_kind: str = "vilbert") -> None:  # fmt: skip
    """One-line UserError, before any data work, when `text`'s BERT does not fit the text stream of `config`
    (`where` names the model, e.g. "model preset 'mini'"). With no --text-init (the profile wants BERT and the
    bundled one does not fit) the message asks for --text-init PATH or --text-init random: a profile that
    starts from BERT never trains a random text stream without being told to."""
    if text.kind == "random":
        return
    b, width = text.sizes, config.hidden_size
    who = "its" if text.asked is not None else "the bundled MiniLM BERT's"
    if b["hidden_size"] != width:
        problem = f"{who} hidden size {b['hidden_size']} does not fit the text stream's {width} ({where})"
    else:
        diffs = [f"{k} {b[k]} vs {getattr(config, k)}" for k in TEXT_INIT_SIZES if b[k] != getattr(config, k)]
        for k in ("num_hidden_layers", "max_position_embeddings"):
            if b[k] < getattr(config, k) and (k != "num_hidden_layers" or model_kind == "vilbert"):
                diffs.append(f"{k} {b[k]} < {getattr(config, k)}")
        if not diffs:
            return
        problem = f"{who} sizes do not fit the text stream ({where}; BERT vs model): {', '.join(diffs)}"
    example = ", e.g. bert-base-uncased" if width == 768 else ""
    hint = (f"pass --text-init PATH (a BERT of hidden size {width}{example}) or --text-init random to train "
            "the text stream from scratch knowingly")  # fmt: skip
    if text.asked is None:
        raise UserError(f"profile {profile!r} starts the text stream from BERT (ViLBERT, arXiv 1908.02265 "
                        f"§3.2), but {problem}; {hint}")  # fmt: skip
    raise UserError(f"--text-init {text.asked}: {problem}; {hint}")


def text_init_key(text: TextInit) -> dict | None:
    """The run-config entry of a text init: None for "random" and "bundled" (run keys stay as they were), else
    the folder and its weights' digest, or the hub name with its snapshot's commit and digest."""
    if text.kind == "folder":
        return {"path": str(text.path), "digest": text.digest}
    if text.kind == "hub":
        return {"name": text.asked, "commit": text.commit, "digest": text.digest}
    return None


def apply_text_init(model, text: TextInit) -> dict:
    """Copy `text`'s BERT into the text stream of `model` (a backbone or a pretraining model; nothing for
    "random") -> the record for the run folder's text_init.json: what was asked and what was loaded."""
    asked = text.asked if text.asked is not None else f"profile default ({text.kind})"
    if text.kind == "random":
        return {"asked": asked, "kind": "random", "tensors": 0}
    target = getattr(model, "bert", model)
    if not hasattr(target, "init_text_from_bert"):
        if text.asked is None:  # e.g. a ViLT backbone: the profile's BERT does not apply
            return {"asked": asked, "kind": "random", "tensors": 0}
        raise UserError(
            f"--text-init {text.asked}: the {type(target).__name__} backbone has no BERT text stream"
        )
    try:
        keys = target.init_text_from_bert(text.path)
    except ValueError as e:
        raise UserError(f"--text-init {text.asked or text.kind}: {one_line(e)}") from e
    return {"asked": asked, "kind": text.kind, "path": str(text.path), "tensors": len(keys),
            "hidden_size": text.sizes["hidden_size"], "digest": text.digest,
            **({"commit": text.commit} if text.commit else {})}  # fmt: skip


TEXT_INIT_HELP = (
    "where the text stream starts: 'bundled' (the MiniLM BERT shipped with the tokenizer, hidden size 384), "
    "'random', a local Hugging Face BERT folder (config.json + weights) or a hub name such as "
    "bert-base-uncased (downloaded unless HF_HUB_OFFLINE is set); default: the profile's choice "
    "(gpu: bundled, which must fit the model)"
)
