"""Data sets clmae reads itself (Fashion-MNIST from IDX files, with a bundled sample), image folders, synthetic
images, and the seeded distributed sampler of the trainer."""

from .fashion_mnist import CLASSES, DEBIAN_ROOT, SAMPLE_ROOT, fmnist_root, load_fashion_mnist, read_idx, to_float
from .imagefolder import ImageFolderImages
from .pretraining import PretrainingData, build_pretraining_data
from .sampler import GlobalBatchSampler, SeededDataset, item_seed
from .synthetic import SyntheticImages
from .transforms import eval_transform, pretrain_transform

__all__ = [
    "CLASSES",
    "DEBIAN_ROOT",
    "SAMPLE_ROOT",
    "GlobalBatchSampler",
    "ImageFolderImages",
    "PretrainingData",
    "SeededDataset",
    "SyntheticImages",
    "build_pretraining_data",
    "eval_transform",
    "fmnist_root",
    "item_seed",
    "load_fashion_mnist",
    "pretrain_transform",
    "read_idx",
    "to_float",
]
