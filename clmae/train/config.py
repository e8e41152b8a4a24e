"""The trainer's one typed config (:class:`TrainConfig`), its recipes (YAML/JSON files) and ``key=value`` overrides.

A run's config is resolved in three layers: the dataclass defaults, then a recipe (a file shipped in
``clmae/train/recipes`` or any YAML/JSON path), then ``key=value`` overrides from the command line. The resolved
config is written beside the checkpoints as ``config.yaml`` and stored in every checkpoint as a plain dict.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .._device import check_device
from .._overrides import parse_pairs, split_options
from ..data.spec import check_outside, check_path
from ..models import PretrainingConfig

RECIPES_DIR = Path(__file__).parent / "recipes"
DECODES = ("auto", "pil", "device")


@dataclass
class TrainConfig:
    """Everything a pretraining run needs; every field can be set in a recipe or as ``key=value``.

    Attributes:
        recipe: name of the recipe this config came from (informational).
        model: architecture, see ``clmae list``.
        method: ``"clmae"`` (learned curriculum masks) or ``"mae"`` (the baseline; every other code path identical).
        mask_ratio: fraction of patches hidden in the MAE step.
        norm_pix_loss: per-patch normalised pixel targets (MAE's option).
        model_kwargs: further model arguments: :class:`~clmae.models.PretrainingConfig` fields (``decoder_depth``,
            loss weights) and timm ``VisionTransformer`` arguments (``embed_dim``, ``depth``); set one with
            ``model_kwargs.depth=4``. Names are checked.
        data: a data spec (:mod:`clmae.data.spec`): ``fmnist`` (Debian's Fashion-MNIST), ``fmnist-sample`` (the
            bundled 1,000 images), ``fmnist:FOLDER``, ``synthetic:N``, ``imagefolder:FOLDER`` / ``FOLDER`` (every
            image under FOLDER), ``wds:SHARDS`` (WebDataset tar shards) or ``hfds:FOLDER[#SPLIT]`` (a saved Hugging
            Face data set); see docs/data.md.
        augment: MAE's augmentation, RandomResizedCrop(scale 0.2-1, ratio 3/4-4/3, bicubic) + horizontal flip,
            drawn per image from the run's seed, the epoch and the image's position; default (none): on for image
            files, off for Fashion-MNIST and synthetic images (held on the training device and augmented there).
        decode: where image files are decoded and augmented: ``pil`` (PIL in the DataLoader workers), ``device``
            (the workers only read the files; JPEGs are decoded in batches on the training device -- nvJPEG on a GPU --
            and cropped there, :mod:`clmae.data.decode`), or ``auto`` (``device`` when training on CUDA, else
            ``pil``). The two draw different crops from the same seeds (same distribution). The default stays
            ``pil`` until the device path has been measured on a GPU (``benchmarks/run_gpu.sh``).
        skip_unreadable: leave out image files that cannot be decoded (every image is decoded once at start-up;
            their count is logged) instead of stopping at the first one.
        epoch_size: images per epoch (default: the whole data set); each epoch draws them from a fresh permutation.
        init: weights to start from instead of a random initialisation: an encoder (a registry name, ``hf-hub:``,
            ``local-dir:``, a weights folder, a ``.safetensors`` file) with a fresh decoder and masking module, or the
            whole pretraining model with ``pretraining:SPEC`` (or a ``.safetensors`` file of one); see
            :mod:`clmae.train.init`.
        num_workers: DataLoader worker processes per GPU.
        epochs: passes over the data; also the length of the curriculum.
        warmup_epochs: linear LR warm-up, in epochs (stepped per iteration).
        batch_size: images per GPU per micro-batch.
        accum_iter: micro-batches accumulated into one update.
        global_batch: if set, the effective batch; ``accum_iter`` is derived from it and the number of GPUs.
        base_lr: LR for an effective batch of 256; the peak LR is ``base_lr * effective_batch / 256``.
        lr: absolute peak LR; overrides ``base_lr`` when set.
        min_lr: LR at the end of the cosine.
        weight_decay: AdamW weight decay on weights of two or more dimensions.
        betas: AdamW betas.
        seed: seed of the initialisation, the data order, the augmentations and MAE's random masks.
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N`` (under torchrun: each process's
            local GPU).
        amp: bf16 autocast on CUDA.
        compile: ``torch.compile`` the encoder blocks, the decoder and the masking module.
        out: output folder.
        save_every: write a checkpoint every this many epochs (and always at the end).
        save_every_steps: also write a checkpoint every this many updates inside an epoch (0: only at epoch ends);
            a run resumed from one continues exactly where it stopped.
        keep_checkpoints: how many of the newest end-of-epoch checkpoints to keep (0 keeps every checkpoint); of
            those written inside an epoch (``save_every_steps``) only the newest is kept, until a newer one exists.
        log_every: log metrics every this many iterations (the only host syncs of the loop).
        vis_every: save a picture of masks and reconstructions every this many epochs (0: only at the end).
        vis_images: images in that picture.
        export: at the end, write a Hub-ready weights folder to ``OUT/export``.
        progress: show a progress bar.
        mask_probe: record the MAE step's mask of each of the data set's first ``mask_probe`` images every epoch
            (``OUT/masks/masks-EEEE.safetensors``), to study how masks vary over a run (0: none).
        fixed_lambda: diagnostic only, not CL-MAE: hold the curriculum factor at this value for the whole run
            (+1: the masking module always a partner, -1: always an adversary) instead of the curriculum.
        term_grace: seconds a run has after SIGTERM to finish its update and write a checkpoint of that position
            before it abandons them (then exit code 143); see :mod:`clmae.train.signals` and docs/cli.md (SLURM's
            ``--signal``).
    """

    recipe: str = ""
    model: str = "vit_tiny_patch4_28"
    method: str = "clmae"
    mask_ratio: float = 0.75
    norm_pix_loss: bool = False
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    data: str = "fmnist-sample"
    augment: bool | None = None
    decode: str = "pil"
    skip_unreadable: bool = False
    epoch_size: int | None = None
    init: str = ""
    num_workers: int = 0
    epochs: int = 10
    warmup_epochs: float = 1.0
    batch_size: int = 64
    accum_iter: int = 1
    global_batch: int | None = None
    base_lr: float = 1e-3
    lr: float | None = None
    min_lr: float = 0.0
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    compile: bool = False
    out: str = "runs/clmae"
    save_every: int = 1
    save_every_steps: int = 0
    keep_checkpoints: int = 2
    log_every: int = 20
    vis_every: int = 1
    vis_images: int = 8
    export: bool = True
    progress: bool = True
    mask_probe: int = 0
    fixed_lambda: float | None = None
    term_grace: float = 60.0

    def validate(self) -> TrainConfig:
        """Raise a ``ValueError`` naming the first bad field; return ``self``."""
        check_path(self.out, "--out")
        check_outside(self.out, self.data, "--out")
        self.pretraining_config()  # method, mask ratio and model_kwargs, checked as the model will be built
        for name in ("epochs", "batch_size", "accum_iter", "save_every", "log_every", "vis_images"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in (
            "epochs",
            "warmup_epochs",
            "base_lr",
            "lr",
            "min_lr",
            "weight_decay",
            "mask_ratio",
            "fixed_lambda",
            "term_grace",
        ):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value}")
        if self.epoch_size is not None and self.epoch_size < 1:
            raise ValueError(f"epoch_size must be >= 1 (or none for the whole data set), got {self.epoch_size}")
        for name in (
            "num_workers",
            "warmup_epochs",
            "min_lr",
            "weight_decay",
            "save_every_steps",
            "keep_checkpoints",
            "vis_every",
            "mask_probe",
            "term_grace",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.decode not in DECODES:
            raise ValueError(f"decode must be one of {', '.join(DECODES)}, got {self.decode!r}")
        if self.fixed_lambda is not None and not -1.0 <= self.fixed_lambda <= 1.0:
            raise ValueError(f"fixed_lambda must be in [-1, 1] (the curriculum's range), got {self.fixed_lambda}")
        if self.fixed_lambda is not None and self.method != "clmae":
            raise ValueError("fixed_lambda only applies to method=clmae (MAE has no masking module)")
        if self.warmup_epochs > self.epochs:
            raise ValueError(f"warmup_epochs ({self.warmup_epochs}) is longer than the run (epochs={self.epochs})")
        if self.global_batch is not None and self.global_batch % self.batch_size:
            raise ValueError(
                f"global_batch {self.global_batch} is not a multiple of batch_size {self.batch_size}; change one"
            )
        if (self.lr if self.lr is not None else self.base_lr) <= 0:
            raise ValueError("the learning rate must be > 0 (set base_lr or lr)")
        check_device(self.device)
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas}")
        return self

    def pretraining_config(self) -> PretrainingConfig:
        """The pretraining model this run trains: ``create_pretraining_model(cfg.pretraining_config())``."""
        own = {"arch": "model", "method": "method", "mask_ratio": "mask_ratio", "norm_pix_loss": "norm_pix_loss"}
        for key, field_name in own.items():
            if key in self.model_kwargs:
                raise ValueError(f"set {key} with {field_name}=VALUE, not as model_kwargs.{key}")
        if "encoder_kwargs" in self.model_kwargs:
            raise ValueError(
                "set encoder arguments one by one as model_kwargs.KEY=VALUE, not as model_kwargs.encoder_kwargs"
            )
        return PretrainingConfig.from_kwargs(
            self.model, self.method, mask_ratio=self.mask_ratio, norm_pix_loss=self.norm_pix_loss, **self.model_kwargs
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-safe dict (tuples become lists)."""
        d = dataclasses.asdict(self)
        d["betas"] = list(d["betas"])
        return d

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a dict (a recipe, a checkpoint's ``config``), converting and checking each value's type."""
        cfg = cls()
        for key, value in values.items():
            _set(cfg, key, value)
        return cfg


def _set(cfg: TrainConfig, key: str, value: Any) -> None:
    (fields,), model = split_options({key: value}, [TrainConfig], "clmae train")
    if model:
        cfg.model_kwargs = {**cfg.model_kwargs, **model}
    for name, typed in fields.items():
        setattr(cfg, name, typed)


def apply_overrides(cfg: TrainConfig, overrides: list[str]) -> TrainConfig:
    """Apply ``key=value`` strings (``epochs=100``, ``betas=0.9,0.95``, ``model_kwargs.depth=4``) in place."""
    for key, value in parse_pairs(overrides).items():
        _set(cfg, key, value)
    return cfg


def list_recipes() -> list[str]:
    """Names of the recipes shipped with clmae."""
    return sorted(p.stem for p in RECIPES_DIR.iterdir() if p.suffix in (".yaml", ".yml", ".json"))


def load_recipe(name_or_path: str) -> dict[str, Any]:
    """A recipe as a dict: a shipped recipe's name (see :func:`list_recipes`) or a YAML/JSON file."""
    path = Path(name_or_path)
    if not path.is_file():
        matches = [p for p in RECIPES_DIR.glob(f"{name_or_path}.*") if p.suffix in (".yaml", ".yml", ".json")]
        if not matches:
            close = difflib.get_close_matches(name_or_path, list_recipes(), n=3, cutoff=0.4)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise FileNotFoundError(
                f"recipe {name_or_path!r} is neither a file nor a shipped recipe.{hint} "
                f"Shipped recipes: {', '.join(list_recipes())}"
            )
        path = matches[0]
    text = path.read_text()
    try:
        values = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise ValueError(f"cannot parse recipe {path}: {e}") from None
    if not isinstance(values, dict):
        raise ValueError(f"recipe {path} must be a mapping of config keys to values")
    values.setdefault("recipe", path.stem)
    return values


def resolve_config(recipe: str | None = None, overrides: list[str] | None = None, **fields: Any) -> TrainConfig:
    """Defaults, then ``recipe``, then ``fields`` (e.g. from command-line flags), then ``key=value`` overrides."""
    cfg = TrainConfig.from_dict(load_recipe(recipe)) if recipe else TrainConfig()
    for key, value in fields.items():
        if value is not None:
            _set(cfg, key, value)
    return apply_overrides(cfg, overrides or []).validate()


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    """Write the config as YAML."""
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
