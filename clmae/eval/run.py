"""``run_eval``: one protocol on one model and one data set, recorded as an :class:`EvalResult`.

Python::

    from clmae.eval import run_eval
    result = run_eval("knn", "raw-pixels", "fmnist")
    result.metrics["reference"]["top1"]  # 0.8554

Command line: ``clmae eval knn --model raw-pixels --data fmnist --out knn.json`` (``key=value`` options override
any field of :class:`CommonConfig` and of the protocol's config; ``model_kwargs.KEY=VALUE`` overrides the encoder's
arguments).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._atomic import check_target
from .._device import resolve_device
from .._options import attributes_doc, check_fields, option
from .._overrides import split_options
from ..data.transforms.augment_finetune import DeviceTrainAugment
from ..data.transforms.device import TensorSplit
from ..data.transforms.identity import identity_at_model_size
from ..data.transforms.numbers import pil_mode
from ..data.transforms.pil import eval_transform_for, train_transform
from ..models.config import check_encoder_kwargs
from .cache import cache_key, default_cache_dir, features_for
from .data import resolve_data
from .features import data_config
from .finetune import FinetuneConfig, finetune
from .knn import knn_metrics
from .linear import LinearProbeConfig, linear_probe_cached, linear_probe_mae
from .model import resolve_model
from .protocols import get_protocol
from .results import EvalResult, device_name, is_result_file


@dataclass
class CommonConfig:
    """Options every protocol takes."""

    seed: int = option(0, "seeds training, shuffling and augmentation (kNN has no randomness).")
    device: str = option("auto", "``auto`` (CUDA if present), ``cpu``, ``cuda``, ``cuda:1``, ...")
    extract_batch_size: int = option(256, "images per forward pass when extracting features.", at_least=1)
    workers: int = option(0, "data-loading processes (0: in the main process).", at_least=0)
    train_limit: int | None = option(None, "evaluate on a fixed random subset (seed 0) of this many training images.")
    val_limit: int | None = option(None, "likewise for the validation images.")
    cache: bool = option(True, "reuse / store extracted features.")
    cache_dir: str | None = option(
        None, "feature-cache folder (default ``$CLMAE_CACHE/features`` or ``~/.cache/clmae/features``)."
    )
    arch: str | None = option(None, "architecture of a weights file or checkpoint that does not name its own.")
    init_seed: int = option(0, "seed of the random initialisation when ``--model`` is an architecture name.")
    revision: str | None = option(None, "Hub revision of published weights (default: the registry's pinned commit).")

    def __post_init__(self) -> None:
        check_fields(self)


CommonConfig.__doc__ = attributes_doc(CommonConfig)


@dataclass
class KnnConfig:
    """kNN options."""

    k: int = option(5, "neighbours of the reference's majority vote (5).")
    k_weighted: int = option(20, "neighbours of the weighted vote (20).")
    temperature: float = option(0.07, "temperature of the weighted vote (0.07).")
    pool: str = option(
        "avg", "feature: ``avg`` (mean of the patch tokens, the reference's) or ``cls``.", choices=("avg", "cls")
    )
    variant: str = option("both", "``both``, ``reference`` or ``weighted``.", choices=("both", "reference", "weighted"))
    chunk_size: int = option(1024, "test rows per distance matrix product.")

    def __post_init__(self) -> None:
        check_fields(self)


KnnConfig.__doc__ = attributes_doc(KnnConfig)


@dataclass
class EvalContext:
    """What a protocol's run function (:data:`~clmae.eval.protocols.PROTOCOLS`) is given besides its config.

    Attributes:
        resolved: the model (:func:`~clmae.eval.model.resolve_model`).
        dataset: the labelled data (:func:`~clmae.eval.data.resolve_data`).
        encoder: the encoder, ``None`` for raw pixels.
        prep: the preprocessing (``input_size``, ``mean``, ``std``, ...), recorded in the result.
        common: the options every protocol takes.
        device: where to compute.
        feature_info: what :meth:`features` did (cache file, reused), recorded in the result.
    """

    resolved: Any
    dataset: Any
    encoder: Any
    prep: dict[str, Any]
    common: CommonConfig
    device: Any
    feature_info: dict[str, Any] = dataclasses.field(default_factory=dict)

    def features(self) -> Any:
        """The frozen features of both splits (a :class:`~clmae.eval.cache.FeatureSet`), from the cache when it
        holds them."""
        common = self.common
        cached_before = _cache_exists(self.resolved, self.dataset, self.prep, common)
        feats = features_for(
            self.resolved,
            self.dataset,
            batch_size=common.extract_batch_size,
            device=str(self.device),
            num_workers=common.workers,
            train_limit=common.train_limit,
            val_limit=common.val_limit,
            cache_dir=common.cache_dir,
            use_cache=common.cache,
            encoder=self.encoder,
        )
        self.feature_info = {"cache_file": feats.cache_file, "reused": cached_before}
        return feats


def parse_options(protocol: str, options: dict[str, Any]) -> tuple[CommonConfig, Any, dict[str, Any]]:
    """Split ``options`` into the common config, the protocol's config and ``model_kwargs.*`` encoder arguments.

    Raises:
        ValueError: for an unknown protocol, option or value, naming the valid options.
    """
    config = get_protocol(protocol).config_class()
    (common, proto), model_overrides = split_options(options, [CommonConfig, config], f"clmae eval {protocol}")
    check_encoder_kwargs(model_overrides)
    return CommonConfig(**common), config(**proto), model_overrides


def run_eval(
    protocol: str,
    model: str,
    data: str,
    options: dict[str, Any] | None = None,
    out: str | Path | None = None,
    *,
    overwrite: bool = False,
) -> EvalResult:
    """Run ``protocol`` (``knn``, ``linear``, ``finetune`` or another of
    :data:`~clmae.eval.protocols.PROTOCOLS`) on ``model`` and ``data``.

    Args:
        protocol: which evaluation.
        model: ``raw-pixels``, an architecture name, a weights folder, a ``.safetensors`` file or a checkpoint.
        data: a labelled data spec: ``fmnist``, ``fmnist:/folder``, ``fmnist-sample``, ``imagefolder:/folder`` or
            another labelled form of :data:`clmae.data.spec.FORMS`.
        options: fields of :class:`CommonConfig` and of the protocol's config (strings are converted), plus
            ``model_kwargs.KEY`` encoder arguments.
        out: write the result JSON here (atomically; an existing file that is not an earlier result is refused
            before the run starts, unless ``overwrite``).
        overwrite: replace ``out`` whatever it holds.

    Returns:
        The :class:`EvalResult`.
    """
    start = time.perf_counter()
    if out is not None:
        check_target(out, is_result_file, "a result written by clmae eval", overwrite=overwrite, folder=False)
    common, cfg, overrides = parse_options(protocol, dict(options or {}))
    if hasattr(cfg, "seed"):  # one seed for the whole run: the common one wins
        cfg.seed = common.seed
    device = resolve_device(common.device)
    resolved = resolve_model(
        model, arch=common.arch, overrides=overrides, init_seed=common.init_seed, revision=common.revision
    )
    spec = get_protocol(protocol)
    if spec.needs_encoder and resolved.is_raw:
        raise ValueError(f"{protocol} needs an encoder; raw-pixels has none (use `clmae eval knn` or `linear`)")
    dataset = resolve_data(data)
    encoder = None if resolved.is_raw else resolved.encoder()
    ctx = EvalContext(resolved, dataset, encoder, data_config(resolved, encoder, dataset), common, device)
    metrics, sizes = spec.run_function()(ctx, cfg)
    prep, feature_info = ctx.prep, ctx.feature_info
    result = EvalResult(
        protocol=protocol,
        model={
            "spec": model,
            "kind": resolved.kind,
            **resolved.info,
            **({"init_seed": common.init_seed} if resolved.kind == "architecture" else {}),
        },
        data={
            "spec": data,
            "kind": dataset.kind,
            "root": str(dataset.root),
            "fingerprint": dataset.fingerprint,
            "num_classes": dataset.num_classes,
            "train_size": sizes[0],
            "val_size": sizes[1],
        },
        hparams={**dataclasses.asdict(common), **dataclasses.asdict(cfg)},
        seed=common.seed,
        metrics=metrics,
        preprocessing=prep,
        device=device_name(device),
        features=feature_info,
    )
    result.run_time_s = round(time.perf_counter() - start, 3)
    if out is not None:
        result.save(out)
    return result


def _frozen(ctx: EvalContext, pool: str) -> tuple[Any, tuple[int, int], tuple]:
    feats = ctx.features()
    sizes = (feats.train_labels.numel(), feats.val_labels.numel())
    return (
        feats,
        sizes,
        (feats.train[pool], feats.train_labels, feats.val[pool], feats.val_labels, ctx.dataset.num_classes),
    )


def run_knn(ctx: EvalContext, cfg: KnnConfig) -> tuple[dict[str, Any], tuple[int, int]]:
    """The ``knn`` protocol: both votes on the frozen features."""
    _, sizes, frozen = _frozen(ctx, cfg.pool)
    metrics = knn_metrics(
        *frozen,
        k=cfg.k,
        k_weighted=cfg.k_weighted,
        temperature=cfg.temperature,
        variant=cfg.variant,
        chunk_size=cfg.chunk_size,
        device=ctx.device,
    )
    return metrics, sizes


def run_linear(ctx: EvalContext, cfg: LinearProbeConfig) -> tuple[dict[str, Any], tuple[int, int]]:
    """The ``linear`` protocol: on cached features (``mode=cached``) or MAE's, with augmented training images."""
    feats, sizes, frozen = _frozen(ctx, cfg.pool)
    device, common, prep = str(ctx.device), ctx.common, ctx.prep
    if cfg.mode == "cached":
        return linear_probe_cached(*frozen, cfg, device), sizes
    tf = train_transform(prep, scale=(cfg.crop_min, 1.0), hflip=cfg.hflip)
    train_ds = ctx.dataset.dataset("train", tf, pil_mode(prep["input_size"][0]), common.train_limit)
    val = (feats.val[cfg.pool], feats.val_labels)
    metrics = linear_probe_mae(ctx.encoder, train_ds, *val, ctx.dataset.num_classes, cfg, device, common.workers)
    return metrics, sizes


def run_finetune(ctx: EvalContext, cfg: FinetuneConfig) -> tuple[dict[str, Any], tuple[int, int]]:
    """The ``finetune`` protocol: on the device where the data allows (:func:`_device_splits`), else with PIL."""
    dataset, prep, common = ctx.dataset, ctx.prep, ctx.common
    aa = None if cfg.auto_augment.lower() in ("", "none") else cfg.auto_augment
    train_ds, val_ds = _device_splits(dataset, prep, cfg, aa, common)
    if train_ds is None:  # image folders, other sizes, augmentations the device path does not do: PIL
        tf = train_transform(prep, scale=(cfg.crop_min, 1.0), hflip=cfg.hflip, auto_augment=aa, re_prob=cfg.reprob)
        mode = pil_mode(prep["input_size"][0])
        train_ds = dataset.dataset("train", tf, mode, common.train_limit)
        val_ds = dataset.dataset("val", eval_transform_for(prep), mode, common.val_limit)
    sizes = (len(train_ds), len(val_ds))
    metrics = finetune(ctx.resolved, train_ds, val_ds, dataset.num_classes, cfg, str(ctx.device), common.workers)
    return metrics, sizes


def _device_splits(dataset, prep, cfg: FinetuneConfig, aa: str | None, common: CommonConfig):
    """Fine-tuning's splits as :class:`TensorSplit` (augmented on the device) where the data is one uint8 tensor at
    the model's size and :class:`DeviceTrainAugment` does the recipe's augmentation; ``(None, None)`` otherwise."""
    splits = dataset.tensors("train", common.train_limit), dataset.tensors("val", common.val_limit)
    if any(t is None or not identity_at_model_size(prep, tuple(t[0].shape[1:])) for t in splits):
        return None, None
    try:
        augment = DeviceTrainAugment(
            prep, scale=(cfg.crop_min, 1.0), hflip=cfg.hflip, auto_augment=aa, re_prob=cfg.reprob, seed=cfg.seed
        )
    except ValueError:
        return None, None
    (train_x, train_y), (val_x, val_y) = splits
    return TensorSplit(train_x, train_y, prep, augment), TensorSplit(val_x, val_y, prep)


def _cache_exists(resolved, dataset, prep, common: CommonConfig) -> bool:
    if not common.cache or resolved.is_raw:
        return False
    limits = {"train": common.train_limit, "val": common.val_limit}
    folder = Path(common.cache_dir) if common.cache_dir else default_cache_dir()
    return (folder / f"{cache_key(resolved, dataset, prep, limits)}.safetensors").is_file()


def summary(result: EvalResult) -> str:
    """One line for the terminal."""
    m = result.metrics
    parts = [f"{name} top1={v['top1']:.4f}" for name, v in m.items() if isinstance(v, dict)]
    if not parts:
        parts = [f"top1={m['top1']:.4f}"] + ([f"top5={m['top5']:.4f}"] if "top5" in m else [])
    where = f"{result.protocol} {result.model['spec']} on {result.data['spec']}"
    return f"{where}: {', '.join(parts)} ({result.run_time_s:.1f} s)"
