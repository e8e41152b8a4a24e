"""The trainer's one typed config (:class:`TrainConfig`), its recipes (YAML/JSON files) and ``key=value`` overrides.

A run's config is resolved in three layers: the dataclass defaults, then a recipe (a file shipped in
``clmae/train/recipes`` or any YAML/JSON path), then ``key=value`` overrides from the command line. The resolved
config is written beside the checkpoints as ``config.yaml`` and stored in every checkpoint as a plain dict.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

RECIPES_DIR = Path(__file__).parent / "recipes"
METHODS = ("clmae", "mae")


@dataclass
class TrainConfig:
    """Everything a pretraining run needs; every field can be set in a recipe or as ``key=value``.

    Attributes:
        recipe: name of the recipe this config came from (informational).
        model: architecture, see ``clmae list``.
        method: ``"clmae"`` (learned curriculum masks) or ``"mae"`` (the baseline; every other code path identical).
        mask_ratio: fraction of patches hidden in the MAE step.
        norm_pix_loss: per-patch normalised pixel targets (MAE's option).
        model_kwargs: further ``clmae.create_pretraining_model`` arguments (e.g. ``embed_dim``, ``depth``); set one
            with ``model_kwargs.depth=4``.
        data: ``fmnist`` (Debian's Fashion-MNIST), ``fmnist-sample`` (the bundled 1,000 images), ``fmnist:FOLDER``,
            ``synthetic:N`` or an ImageNet-style folder ``ROOT/CLASS/IMAGE``.
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
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        amp: bf16 autocast on CUDA.
        compile: ``torch.compile`` the encoder blocks, the decoder and the masking module.
        out: output folder.
        save_every: write a checkpoint every this many epochs (and always at the end).
        keep_checkpoints: how many of the newest checkpoints to keep (0 keeps all).
        log_every: log metrics every this many iterations (the only host syncs of the loop).
        vis_every: save a picture of masks and reconstructions every this many epochs (0: only at the end).
        vis_images: images in that picture.
        export: at the end, write a Hub-ready weights folder to ``OUT/export``.
        progress: show a progress bar.
    """

    recipe: str = ""
    model: str = "vit_tiny_patch4_28"
    method: str = "clmae"
    mask_ratio: float = 0.75
    norm_pix_loss: bool = False
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    data: str = "fmnist-sample"
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
    keep_checkpoints: int = 2
    log_every: int = 20
    vis_every: int = 1
    vis_images: int = 8
    export: bool = True
    progress: bool = True

    def validate(self) -> TrainConfig:
        """Raise a ``ValueError`` naming the first bad field; return ``self``."""
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {self.mask_ratio}")
        for name in ("epochs", "batch_size", "accum_iter", "save_every", "log_every", "vis_images"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("num_workers", "warmup_epochs", "min_lr", "weight_decay", "keep_checkpoints", "vis_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.warmup_epochs > self.epochs:
            raise ValueError(f"warmup_epochs ({self.warmup_epochs}) is longer than the run (epochs={self.epochs})")
        if self.global_batch is not None and self.global_batch % self.batch_size:
            raise ValueError(
                f"global_batch {self.global_batch} is not a multiple of batch_size {self.batch_size}; change one"
            )
        if (self.lr if self.lr is not None else self.base_lr) <= 0:
            raise ValueError("the learning rate must be > 0 (set base_lr or lr)")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas}")
        return self

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


def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(TrainConfig)


def _unknown(key: str) -> ValueError:
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    close = difflib.get_close_matches(key, names, n=3)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return ValueError(f"unknown config key {key!r}.{hint} Known keys: {', '.join(names)}")


def _parse_bool(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{key} must be true or false, got {value!r}")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert ``value`` (from YAML/JSON or a command-line string) to the field type ``tp``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):  # X | None
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", "")):
            return None
        return _coerce(value, next(a for a in args if a is not type(None)), key)
    try:
        if tp is bool:
            return _parse_bool(value, key)
        if tp is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            number = float(value) if isinstance(value, str) else value  # "4096", "1e3"
            if isinstance(number, bool) or number != int(number):
                raise ValueError
            return int(number)
        if tp is float:
            return float(value)
        if tp is str:
            return str(value)
        if origin is tuple:
            items = value.strip("()[] ").split(",") if isinstance(value, str) else value
            return tuple(_coerce(v, a, key) for v, a in zip(items, args, strict=True))
        if origin is dict:
            value = yaml.safe_load(value) if isinstance(value, str) else value
            if not isinstance(value, dict):
                raise ValueError
            return dict(value)
    except (TypeError, ValueError):
        name = getattr(tp, "__name__", str(tp))
        raise ValueError(f"config key {key!r} expects {name}, got {value!r}") from None
    raise TypeError(f"unsupported config type {tp} for {key!r}")


def _scalar(text: str) -> Any:
    """A ``model_kwargs.KEY=VALUE`` value: YAML scalar, with numbers like ``1e-3`` read as floats."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _set(cfg: TrainConfig, key: str, value: Any) -> None:
    if key.startswith("model_kwargs."):
        sub = key.split(".", 1)[1]
        cfg.model_kwargs = {**cfg.model_kwargs, sub: _scalar(value) if isinstance(value, str) else value}
        return
    types_ = _field_types()
    if key not in types_:
        raise _unknown(key)
    setattr(cfg, key, _coerce(value, types_[key], key))


def apply_overrides(cfg: TrainConfig, overrides: list[str]) -> TrainConfig:
    """Apply ``key=value`` strings (``epochs=100``, ``betas=0.9,0.95``, ``model_kwargs.depth=4``) in place."""
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key=value, e.g. epochs=100")
        key, value = item.split("=", 1)
        _set(cfg, key.strip(), value.strip())
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
