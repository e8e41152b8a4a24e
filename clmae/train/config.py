"""The trainer's one typed config (:class:`TrainConfig`), its recipes (YAML/JSON files) and ``key=value`` overrides.

A run's config is resolved in three layers: the dataclass defaults, then a recipe (a file shipped in
``clmae/train/recipes`` or any YAML/JSON path), then ``key=value`` overrides from the command line. The resolved
config is written beside the checkpoints as ``config.yaml`` and stored in every checkpoint as a plain dict.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .._atomic import write_text
from .._device import check_device
from .._options import attributes_doc, option
from .._options import check_field as _check_field
from .._overrides import parse_pairs, split_options
from .._parse import check_string_keys, parse_json, parse_yaml
from ..data.spec import check_outside, check_path, forms_help
from ..models import PretrainingConfig, check_config
from .recipes import RECIPES_DIR, list_recipes

DECODES = ("auto", "pil", "device")
_MAX_SEED = 2**32 - 1 - 4096  # every process seeds numpy with seed + rank (timm's random_seed)


# Short spellings of two model arguments, MAE's own flag names: ``mask_ratio=0.6`` is ``model_kwargs.mask_ratio=0.6``.
# The values live in ``model_kwargs`` only, and reach the model through :meth:`TrainConfig.pretraining_config`.
MODEL_SHORTHANDS = ("mask_ratio", "norm_pix_loss")


@dataclass
class TrainConfig:
    """Everything a pretraining run needs; every field can be set in a recipe or as ``key=value``.

    ``mask_ratio=`` and ``norm_pix_loss=`` (MAE's flag names) are short for ``model_kwargs.mask_ratio=`` and
    ``model_kwargs.norm_pix_loss=``; read them back as ``cfg.mask_ratio`` and ``cfg.norm_pix_loss``.
    """

    recipe: str = option("", "name of the recipe this config came from (informational).", resumable=True)
    model: str = option("vit_tiny_patch4_28", "architecture, see ``clmae list``.")
    method: str = option(
        "clmae", '``"clmae"`` (learned curriculum masks) or ``"mae"`` (the baseline; every other code path identical).'
    )
    model_kwargs: dict[str, Any] = option(  # noqa: RUF009 (option copies a dict default per instance)
        {},
        "model arguments: :class:`~clmae.models.PretrainingConfig` fields (``mask_ratio``, ``norm_pix_loss``, "
        "``decoder_depth``, loss weights) and timm ``VisionTransformer`` arguments (``embed_dim``, ``depth``); set "
        "one with ``model_kwargs.depth=4``. Names are checked.",
    )
    data: str = option(
        "fmnist-sample",
        f"a data spec, one of the forms of :data:`clmae.data.spec.FORMS`: {forms_help()}; see docs/data.md.",
        resumable=True,
    )
    augment: bool | None = option(
        None,
        "MAE's augmentation, RandomResizedCrop(scale 0.2-1, ratio 3/4-4/3, bicubic) + horizontal flip, drawn per "
        "image from the run's seed, the epoch and the image's position; default (none): on for image files, off for "
        "Fashion-MNIST and synthetic images (held on the training device and augmented there).",
    )
    decode: str = option(
        "pil",
        "where image files are decoded and augmented: ``pil`` (PIL in the DataLoader workers), ``device`` (the "
        "workers only read the files; JPEGs are decoded in batches on the training device -- nvJPEG on a GPU -- and "
        "cropped there, :mod:`clmae.data.transforms.decode`), or ``auto`` (``device`` when training on CUDA, else "
        "``pil``). The two draw different crops from the same seeds (same distribution). The default stays ``pil`` "
        "until the device path has been measured on a GPU (``benchmarks/run_gpu.sh``).",
        choices=DECODES,
        resumable=True,
    )
    allow_data_change: bool = option(
        False,
        "resume on data other than the checkpoint's: by default a resume compares the data with the fingerprint "
        "the checkpoint recorded (image count, file names, a sample of contents; :mod:`clmae.data.fingerprint`) and "
        "refuses other data, since the run would then no longer be the one it continues.",
        resumable=True,
    )
    skip_unreadable: bool = option(
        False,
        "leave out image files that cannot be decoded (every image is decoded once at start-up; their count is "
        "logged) instead of stopping at the first one.",
    )
    epoch_size: int | None = option(
        None,
        "images per epoch (default, none: the whole data set); each epoch draws them from a fresh permutation.",
        at_least=1,
        none="the whole data set",
    )
    init: str = option(
        "",
        "weights to start from instead of a random initialisation: an encoder (a registry name, ``hf-hub:``, "
        "``local-dir:``, a weights folder, a ``.safetensors`` file) with a fresh decoder and masking module, or the "
        "whole pretraining model with ``pretraining:SPEC`` (or a ``.safetensors`` file of one); see "
        ":mod:`clmae.train.init`.",
    )
    num_workers: int = option(0, "DataLoader worker processes per GPU.", at_least=0, resumable=True)
    epochs: int = option(10, "passes over the data; also the length of the curriculum.", at_least=1, finite=True)
    warmup_epochs: float = option(1.0, "linear LR warm-up, in epochs (stepped per iteration).", at_least=0, finite=True)
    batch_size: int = option(64, "images per GPU per micro-batch.", at_least=1, resumable=True)
    accum_iter: int = option(1, "micro-batches accumulated into one update.", at_least=1, resumable=True)
    global_batch: int | None = option(
        None,
        "if set, the effective batch; ``accum_iter`` is derived from it and the number of GPUs.",
        at_least=1,
        resumable=True,
        none="batch_size x accum_iter x processes",
    )
    base_lr: float = option(
        1e-3, "LR for an effective batch of 256; the peak LR is ``base_lr * effective_batch / 256``.", finite=True
    )
    lr: float | None = option(None, "absolute peak LR; overrides ``base_lr`` when set.", finite=True)
    min_lr: float = option(0.0, "LR at the end of the cosine.", at_least=0, finite=True)
    weight_decay: float = option(
        0.05, "AdamW weight decay on weights of two or more dimensions.", at_least=0, finite=True
    )
    betas: tuple[float, float] = option((0.9, 0.95), "AdamW betas.")
    seed: int = option(
        0, "seed of the initialisation, the data order, the augmentations and MAE's random masks.", at_least=0
    )
    device: str = option(
        "auto",
        "``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N`` (under torchrun: each process's local GPU).",
        resumable=True,
    )
    amp: bool = option(True, "bf16 autocast on CUDA.")
    compile: bool = option(
        False, "``torch.compile`` the encoder blocks, the decoder and the masking module.", resumable=True
    )
    cuda_graph: bool = option(
        False,
        "device-held data (e.g. fmnist): run each update from buffers allocated once and, on CUDA, replay it as a "
        "captured CUDA graph (fewer kernel launches for small models); elsewhere, or if capture fails, the same update "
        "runs eagerly.",
        resumable=True,
    )
    out: str = option("runs/clmae", "output folder.", resumable=True)
    save_every: int = option(
        1, "write a checkpoint every this many epochs (and always at the end).", at_least=1, resumable=True
    )
    save_every_steps: int = option(
        0,
        "also write a checkpoint every this many updates inside an epoch (0: only at epoch ends); a run resumed from "
        "one continues exactly where it stopped.",
        at_least=0,
        resumable=True,
    )
    keep_checkpoints: int = option(
        2,
        "how many of the newest end-of-epoch checkpoints to keep (0 keeps every checkpoint); of those written inside "
        "an epoch (``save_every_steps``) only the newest is kept, until a newer one exists.",
        at_least=0,
        resumable=True,
    )
    log_every: int = option(
        20, "log metrics every this many iterations (the only host syncs of the loop).", at_least=1, resumable=True
    )
    vis_every: int = option(
        1,
        "save a picture of masks and reconstructions every this many epochs (0: only at the end).",
        at_least=0,
        resumable=True,
    )
    vis_images: int = option(8, "images in that picture.", at_least=1, resumable=True)
    export: bool = option(True, "at the end, write a Hub-ready weights folder to ``OUT/export``.", resumable=True)
    progress: bool = option(True, "show a progress bar.", resumable=True)
    mask_probe: int = option(
        0,
        "record the MAE step's mask of each of the data set's first ``mask_probe`` images every epoch "
        "(``OUT/masks/masks-EEEE.safetensors``), to study how masks vary over a run (0: none).",
        at_least=0,
        resumable=True,
    )
    fixed_lambda: float | None = option(
        None,
        "diagnostic only, not CL-MAE: hold the curriculum factor at this value for the whole run (+1: the masking "
        "module always a partner, -1: always an adversary) instead of the curriculum.",
        finite=True,
    )
    term_grace: float = option(
        60.0,
        "seconds a run has after SIGTERM or Ctrl-C to finish its update and write a checkpoint of that position "
        "before it abandons them (then exit code 143, or 130 after Ctrl-C); see :mod:`clmae.train.signals` and "
        "docs/cli.md (SLURM's ``--signal``).",
        at_least=0,
        finite=True,
        resumable=True,
    )

    @property
    def mask_ratio(self) -> float:
        """The MAE step's mask ratio (``model_kwargs.mask_ratio``, or the model's default)."""
        return self.pretraining_config(check=False).mask_ratio

    @property
    def norm_pix_loss(self) -> bool:
        """Whether the pixel targets are normalised per patch (``model_kwargs.norm_pix_loss``, or the default)."""
        return self.pretraining_config(check=False).norm_pix_loss

    def validate(self) -> TrainConfig:
        """Raise a ``ValueError`` naming the first bad field; return ``self``.

        Each field's own rules (bounds, finiteness, choices) are declared beside it (:func:`option`); the rules
        between fields follow. The fields only: whether the model builds and fits the device is checked once, by
        :func:`~clmae.train.train`, as it builds the model (before it writes anything)."""
        check_path(self.out, "--out")
        check_outside(self.out, self.data, "--out")
        for f in dataclasses.fields(self):
            _check_field(f, getattr(self, f.name))
        self.pretraining_config(check=False)  # method, mask ratio, model_kwargs' names and values (no model built)
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
        if self.lr is not None and self.lr <= 0:
            raise ValueError(f"lr must be > 0 (or none to use base_lr), got {self.lr}")
        if self.lr is None and self.base_lr <= 0:
            raise ValueError(f"base_lr must be > 0, got {self.base_lr}")
        if self.seed > _MAX_SEED:
            raise ValueError(f"seed must be <= {_MAX_SEED} (numpy's range, less one per process), got {self.seed}")
        check_device(self.device)
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas}")
        return self

    def pretraining_config(self, check: bool = True) -> PretrainingConfig:
        """The pretraining model this run trains: ``create_pretraining_model(cfg.pretraining_config())``.

        Args:
            check: also build it on the ``meta`` device (:func:`~clmae.models.check_config`), so that values only
                building can check fail now.
        """
        own = {"arch": "model", "method": "method"}
        for key, field_name in own.items():
            if key in self.model_kwargs:
                raise ValueError(f"set {key} with {field_name}=VALUE, not as model_kwargs.{key}")
        if "encoder_kwargs" in self.model_kwargs:
            raise ValueError(
                "set encoder arguments one by one as model_kwargs.KEY=VALUE, not as model_kwargs.encoder_kwargs"
            )
        cfg = PretrainingConfig.from_kwargs(self.model, self.method, **self.model_kwargs)
        return check_config(cfg) if check else cfg

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-safe dict (tuples become lists)."""
        d = dataclasses.asdict(self)
        d["betas"] = list(d["betas"])
        return d

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a dict (a recipe, a checkpoint's ``config``), converting and checking each value's type.

        ``mask_ratio`` / ``norm_pix_loss`` at the top level (older checkpoints, recipes using the shorthand) go into
        ``model_kwargs`` whatever the order of the keys; the same one given both ways with two values is refused.
        """
        nested = values.get("model_kwargs")
        for key in MODEL_SHORTHANDS:
            if key in values and isinstance(nested, dict) and key in nested and nested[key] != values[key]:
                raise ValueError(
                    f"{key} is given twice, {values[key]!r} as {key} and {nested[key]!r} as model_kwargs.{key}: "
                    "keep one"
                )
        cfg = cls()
        # model_kwargs first: setting it replaces the dict, and a shorthand then adds to it
        for key, value in sorted(values.items(), key=lambda item: item[0] != "model_kwargs"):
            _set(cfg, key, value)
        return cfg


def resumable_fields() -> set[str]:
    """The fields a resumed run may change (declared with ``option(..., resumable=True)``)."""
    return {f.name for f in dataclasses.fields(TrainConfig) if f.metadata["resumable"]}


TrainConfig.__doc__ = attributes_doc(TrainConfig)


def _set(cfg: TrainConfig, key: str, value: Any) -> None:
    if key in MODEL_SHORTHANDS:
        key = f"model_kwargs.{key}"
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
    values = parse_json(text, f"recipe {path}") if path.suffix == ".json" else parse_yaml(text, f"recipe {path}")
    check_string_keys(values, f"recipe {path}")
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
    """Write the config as YAML (a file: atomically; ``/dev/stdout`` and other non-files: directly)."""
    text = yaml.safe_dump(cfg.to_dict(), sort_keys=False)
    if Path(path).exists() and not Path(path).is_file():
        Path(path).write_text(text)
    else:
        write_text(path, text, what="config")
