"""A synthetic image set for tests and smoke runs: smooth random images, generated on the fly from their index."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset


class SyntheticImages(Dataset):
    """``length`` smooth random images ``[C, H, W]`` (a 4x4 grid of N(0, 1) values, bilinearly upsampled).

    Smooth, so a masked autoencoder can learn to fill in hidden patches and its loss falls. Image ``i`` depends only
    on ``seed`` and ``i``.

    Args:
        length: number of images.
        shape: ``(C, H, W)``.
        seed: seed of the set.
    """

    def __init__(self, length: int, shape: tuple[int, int, int], seed: int = 0) -> None:
        if length < 1:
            raise ValueError(f"a synthetic data set needs at least one image, got {length}")
        self.length, self.shape, self.seed = length, tuple(shape), seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> torch.Tensor:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} images")
        c, h, w = self.shape
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        coarse = torch.randn(1, c, 4, 4, generator=g)
        return F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=True)[0]
