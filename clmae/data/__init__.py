"""Data sets clmae reads itself (Fashion-MNIST from IDX files, with a bundled sample)."""

from .fashion_mnist import CLASSES, DEBIAN_ROOT, SAMPLE_ROOT, load_fashion_mnist, read_idx, to_float

__all__ = ["CLASSES", "DEBIAN_ROOT", "SAMPLE_ROOT", "load_fashion_mnist", "read_idx", "to_float"]
