"""Data sets clmae reads itself (Fashion-MNIST from IDX files, with a bundled sample), users' images (folders,
WebDataset tar shards, saved Hugging Face data sets), synthetic images, the seeded distributed sampler of the
trainer, and how an image becomes a model input (:mod:`clmae.data.preprocess`; augmentation for pretraining in
:mod:`clmae.data.augment`, for fine-tuning in :mod:`clmae.data.augment_finetune`)."""

from .augment import crop_params, random_resized_crop, resized_crop
from .device import DeviceImages
from .fashion_mnist import CLASSES, DEBIAN_ROOT, SAMPLE_ROOT, fmnist_root, load_fashion_mnist, read_idx, to_float
from .hfdataset import HFDatasetImages
from .imagefolder import ImageFolderImages, find_images
from .images import IMAGE_EXTENSIONS, ImageSource, decode_image
from .pretraining import PretrainingData, build_pretraining_data
from .sampler import GlobalBatchSampler, SeededDataset, item_seed, item_seeds
from .spec import DataSpec, parse_data_spec
from .synthetic import SyntheticImages
from .transforms import eval_transform, pretrain_transform
from .webdataset import WebDatasetImages, expand_braces, expand_shards

__all__ = [
    "CLASSES",
    "DEBIAN_ROOT",
    "IMAGE_EXTENSIONS",
    "SAMPLE_ROOT",
    "DataSpec",
    "DeviceImages",
    "GlobalBatchSampler",
    "HFDatasetImages",
    "ImageFolderImages",
    "ImageSource",
    "PretrainingData",
    "SeededDataset",
    "SyntheticImages",
    "WebDatasetImages",
    "build_pretraining_data",
    "crop_params",
    "decode_image",
    "eval_transform",
    "expand_braces",
    "expand_shards",
    "find_images",
    "fmnist_root",
    "item_seed",
    "item_seeds",
    "load_fashion_mnist",
    "parse_data_spec",
    "pretrain_transform",
    "random_resized_crop",
    "read_idx",
    "resized_crop",
    "to_float",
]
