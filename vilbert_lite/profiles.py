"""Run sizes for the three profiles, in one place: `smoke` (CI, seconds), `cpu` (laptop, minutes), `gpu` (scale)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

PROFILES = ("smoke", "cpu", "gpu")


@dataclass(frozen=True)
class WorldSize:
    """How many scenes the synthetic world has per split, and image size."""

    pretrain_scenes: int  # scenes whose captions form the pretraining corpus
    train_scenes: int  # downstream train split (much smaller, as in the paper)
    val_scenes: int
    test_scenes: int
    image_size: int = 160
    captions_per_scene: int = 3
    questions_per_scene: int = 4
    # weights of scenes with 1, 2, ..., 8 objects (normalised); the default is the CLEVR-like 2-8, uniform
    object_counts: tuple[float, ...] = (0, 1, 1, 1, 1, 1, 1, 1)
    # weights of the caption styles of texts.CAPTION_STYLES (listing, vague, near, relation, closeup, kinds,
    # abstract); a scene's captions take distinct styles while it has styles left
    caption_styles: tuple[float, ...] = (1, 1, 1, 1, 1, 1, 1)


@dataclass(frozen=True)
class TrainSize:
    """Optimisation settings shared by pretraining and fine-tuning runs."""

    epochs: int
    batch_size: int
    lr: float
    warmup_frac: float = 0.1
    max_steps: int | None = None


@dataclass(frozen=True)
class Profile:
    name: str
    model_preset: str
    world: WorldSize
    pretrain: TrainSize
    finetune: TrainSize
    seeds: int = 3
    # True: the text stream starts from the bundled MiniLM BERT (hidden size 384) unless --text-init says
    # otherwise; where it does not fit the preset (gpu: `base`, 768), pretraining and ViLBERT† fine-tuning stop
    # with a UserError asking for --text-init PATH (a BERT of the model's width) or --text-init random: never a
    # silent random start
    init_text_from_bert: bool = False
    # pretraining loss weights over objectives.DEFAULT_WEIGHTS ({"mlm", "region", "align"}); {} = all 1
    pretrain_weights: dict = field(default_factory=dict)
    # per-task fine-tuning overrides of `finetune` ({task: {"epochs": E, "max_steps": None}}), chosen on ViLBERT†
    # validation curves (studies/finetune_curves.py); a task not listed uses `finetune` as it is
    finetune_budgets: dict = field(default_factory=dict)
    # per-task data options of the synthetic world ({task: {...}}), e.g. {"nlvr": {"per_scene": 4}} statements per
    # scene; they change a task's texts, never the images, so the world (and its caches) stay as they are
    task_data: dict = field(default_factory=dict)
    # ViLT's pretraining recipe at this profile (notebook 11): {"views": 1 | 2, "config": {ViLTConfig overrides}},
    # chosen on held-out yardsticks and step cost (studies/vilt_recipe.py); {} = ViLT's two views, the preset
    vilt_recipe: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


_PROFILES = {
    "smoke": Profile(
        name="smoke",
        model_preset="tiny",
        world=WorldSize(pretrain_scenes=48, train_scenes=32, val_scenes=16, test_scenes=16, image_size=128),
        pretrain=TrainSize(epochs=2, batch_size=16, lr=3e-3, max_steps=20),
        finetune=TrainSize(epochs=2, batch_size=16, lr=1e-3, max_steps=12),
        seeds=1,
        task_data={"vcr": {"style": "attribute"}},  # the VCR-style questions of `cpu`, one per scene
    ),
    # `cpu`: the `mini` model (the `small` layout at width 128, from scratch, no dropout) on a world matched to the
    # compute: mostly one to three objects per scene, captions that name what is there, five captions per image.
    # A pretraining is 12 epochs of 64 (1,884 steps) with the alignment loss weighted 3x: held-out alignment 0.88
    # where the old 282-step recipe stayed at chance (reports/DESIGN_LOG.md: the saddle, the pretraining
    # recipe); `small` (text stream from the bundled MiniLM) costs ~4x more per step.
    "cpu": Profile(
        name="cpu",
        model_preset="mini",
        world=WorldSize(
            pretrain_scenes=2000,
            train_scenes=600,
            val_scenes=200,
            test_scenes=200,
            captions_per_scene=5,
            object_counts=(4, 3, 2, 1, 1, 0.5, 0.5, 0.5),
            caption_styles=(3, 0.5, 1, 1, 2, 1, 1),
        ),  # fmt: skip
        pretrain=TrainSize(epochs=12, batch_size=64, lr=1e-3),
        finetune=TrainSize(epochs=2, batch_size=32, lr=5e-4, max_steps=40),
        seeds=3,
        pretrain_weights={"align": 3.0},
        # epochs per task from ViLBERT† validation curves on the task's data (studies/finetune_curves.py ->
        # reports/finetune_curves/vilbert_dagger*-cpu.json: the first epoch within 0.01 of the curve's best;
        # `repro.plan.budget_curves`). NLVR's curve (four statements per scene) is best after its first epoch of
        # 300 steps; the VCR-style questions about attributes reach Q→AR 0.93 in 9 epochs of 213 steps
        # (reports/DESIGN_LOG.md, The VCR-style task).
        finetune_budgets={
            "vqa": {"epochs": 9, "max_steps": None},
            "refer": {"epochs": 9, "max_steps": None},
            "nlvr": {"epochs": 1, "max_steps": None},
            "vcr": {"epochs": 9, "max_steps": None},
            "retrieval": {"epochs": 10, "max_steps": None},
        },
        # four NLVR-style statements and up to four VCR-style questions per scene, as VQA has four questions (text
        # is cheap; the images are the scenes'): NLVR 2,400 training statements instead of 600; VCR-style
        # questions of the "attribute" style (what colour / shape is the object of a size; the rationales give its
        # other attribute), 852 training questions, where the spatial-relation set stayed at chance
        task_data={"nlvr": {"per_scene": 4}, "vcr": {"per_scene": 4, "style": "attribute"}},
        # ViLT (notebook 11): 32-pixel patches (ViLT-B/32's; 25 per 160-px image, as many as the CNN grid's cells)
        # and ViLT's two views per batch: of the recipes timed and pretrained (studies/vilt_recipe.py ->
        # reports/vilt_recipe/), the cheapest step whose held-out alignment reaches 0.85 (0.853; 16-px patches
        # 0.882 at 2.3x the step; one view with 32-px patches stayed at chance, 0.517)
        vilt_recipe={"config": {"patch_size": 32}},
    ),
    "gpu": Profile(
        name="gpu",
        model_preset="base",
        world=WorldSize(
            pretrain_scenes=60000, train_scenes=8000, val_scenes=1000, test_scenes=1000, image_size=224
        ),
        pretrain=TrainSize(epochs=10, batch_size=256, lr=1e-4),
        finetune=TrainSize(epochs=20, batch_size=64, lr=4e-5),
        seeds=5,
        init_text_from_bert=True,
        # the VCR-style questions of `cpu` (one per scene: the world is large); not measured at this scale
        task_data={"vcr": {"style": "attribute"}},
    ),
}


def get_profile(name: str | Profile, **overrides) -> Profile:
    """Return the named profile (`smoke`, `cpu`, `gpu`), optionally with top-level fields replaced. A run
    resolves its profile once, where it starts, and hands the `Profile` down: given one, this returns it."""
    if isinstance(name, Profile):
        return replace(name, **overrides) if overrides else name
    if name not in _PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {name!r}")
    return replace(_PROFILES[name], **overrides) if overrides else _PROFILES[name]
