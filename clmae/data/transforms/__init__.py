"""How an image becomes a model input: the numbers every pipeline shares and every pipeline built from them.

* :mod:`~clmae.data.transforms.numbers` -- :func:`normalize` and :func:`denormalize`, the default statistics
  (ImageNet's, fitted to a model's channels), the evaluation geometry (resize to ``size / crop_pct``, centre crop),
  :func:`pil_mode`;
* :mod:`~clmae.data.transforms.pil` -- the pipelines on PIL images: MAE's pretraining augmentation
  (:func:`pretrain_transform`), the evaluation transform (:func:`eval_transform`, from a timm data config
  :func:`eval_transform_for`) and fine-tuning's training transform (:func:`train_transform`, timm's);
* the same pipelines on tensors, on the training device, one random draw per sample from its own seed:
  :mod:`~clmae.data.transforms.augment` (pretraining: :func:`crop_params`, :func:`resized_crop`, and the resampling
  pieces), :mod:`~clmae.data.transforms.augment_finetune` (fine-tuning: :class:`DeviceTrainAugment`),
  :mod:`~clmae.data.transforms.identity` (evaluation where it moves no pixel: :func:`normalize_uint8`);
* :mod:`~clmae.data.transforms.device` -- small sets held whole on the device and served a batch at a time
  (:class:`DeviceImages` for pretraining, :class:`TensorSplit` for fine-tuning);
* :mod:`~clmae.data.transforms.decode` -- image files decoded and augmented in batches on the device
  (:class:`EncodedImages`, :class:`BatchDecoder`).

Every tensor pipeline calls :func:`normalize` and is tested bit for bit (or to a grey level, where it resamples)
against its PIL counterpart.
"""

from ..._lazy import lazy_package

__all__ = [
    "EVAL_CROP_PCT",
    "GREY_MEAN",
    "GREY_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "BatchDecoder",
    "DeviceImages",
    "DeviceTrainAugment",
    "EncodedImages",
    "RandAugmentSpec",
    "TensorSplit",
    "collate_encoded",
    "crop_params",
    "default_mean_std",
    "denormalize",
    "eval_geometry",
    "eval_is_identity",
    "eval_resize",
    "eval_transform",
    "eval_transform_for",
    "fit_channels",
    "identity_at_model_size",
    "image_kind",
    "jpeg_info",
    "normalize",
    "normalize_uint8",
    "pil_mode",
    "pretrain_transform",
    "rand_augment_spec",
    "random_resized_crop",
    "resample",
    "resample_matrix",
    "resize_matrix",
    "resized_crop",
    "train_transform",
    "uniform",
]

# Each name is imported from its module when first used (clmae._lazy): reading the numbers loads no decoder.
lazy_package(
    __name__,
    {
        "crop_params": ".augment",
        "random_resized_crop": ".augment",
        "resample": ".augment",
        "resample_matrix": ".augment",
        "resize_matrix": ".augment",
        "resized_crop": ".augment",
        "uniform": ".augment",
        "DeviceTrainAugment": ".augment_finetune",
        "RandAugmentSpec": ".augment_finetune",
        "rand_augment_spec": ".augment_finetune",
        "BatchDecoder": ".decode",
        "EncodedImages": ".decode",
        "collate_encoded": ".decode",
        "image_kind": ".decode",
        "jpeg_info": ".decode",
        "DeviceImages": ".device",
        "TensorSplit": ".device",
        "identity_at_model_size": ".identity",
        "normalize_uint8": ".identity",
        "EVAL_CROP_PCT": ".numbers",
        "GREY_MEAN": ".numbers",
        "GREY_STD": ".numbers",
        "IMAGENET_MEAN": ".numbers",
        "IMAGENET_STD": ".numbers",
        "default_mean_std": ".numbers",
        "denormalize": ".numbers",
        "eval_geometry": ".numbers",
        "eval_is_identity": ".numbers",
        "eval_resize": ".numbers",
        "fit_channels": ".numbers",
        "normalize": ".numbers",
        "pil_mode": ".numbers",
        "eval_transform": ".pil",
        "eval_transform_for": ".pil",
        "pretrain_transform": ".pil",
        "train_transform": ".pil",
    },
)
