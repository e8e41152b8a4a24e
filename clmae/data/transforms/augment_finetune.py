"""Fine-tuning's training augmentation for uint8 images held on the device, one random draw per sample (the
pretraining augmentation is :mod:`clmae.data.transforms.augment`, whose crop boxes and per-sample numbers it shares).

:func:`clmae.data.transforms.pil.train_transform` builds timm's PIL pipeline: RandomResizedCrop -> horizontal flip ->
RandAugment -> ToTensor -> Normalize -> random erasing, one Python call and one PIL image per sample. For a data set
held as one uint8 tensor (Fashion-MNIST) :class:`DeviceTrainAugment` applies the same steps to a whole batch on its
device, with each sample's draws taken from its own seed (:func:`clmae.data.transforms.augment.uniform`):

* RandomResizedCrop(``scale``, ratio 3/4-4/3) with the model's filter (PIL's bilinear or bicubic, antialiased, each
  pass rounded to a grey level) and a flip with probability ``hflip``: the crop boxes of
  :mod:`clmae.data.transforms.augment`.
* RandAugment (timm's ``rand-...-inc1`` specs, the ops of ``_RAND_INCREASING_TRANSFORMS``): ``n`` ops drawn with
  replacement, each applied with its probability at a magnitude drawn from N(m, mstd) clipped to [0, mmax]. The
  photometric ops follow Pillow's integer formulas (autocontrast, equalize, invert, posterize, solarize,
  solarize-add, contrast, brightness, sharpness; colour is the identity on grey images); the geometric ones
  (rotate, shear, translate) resample with ``grid_sample`` (bilinear or bicubic, filled with the data mean as timm
  does), which matches PIL's affine transform inside the image and differs by a pixel's blend at its border.
* random erasing (timm's ``RandomErasing``, mode ``pixel``, one box): the noise comes from a generator on the
  device seeded by the run's seed, not from the per-sample seeds.

The draws differ from the PIL pipeline's (which uses Python's and NumPy's global generators): the augmentation has
the same distribution, not the same samples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .augment import crop_params, resample_matrix, uniform
from .numbers import normalize

# timm's rand-...-inc1 ops, in timm's order (ColorIncreasing is the identity on grey images)
SUPPORTED_OPS = (
    "AutoContrast",
    "Equalize",
    "Invert",
    "Rotate",
    "PosterizeIncreasing",
    "SolarizeIncreasing",
    "SolarizeAdd",
    "ColorIncreasing",
    "ContrastIncreasing",
    "BrightnessIncreasing",
    "SharpnessIncreasing",
    "ShearX",
    "ShearY",
    "TranslateXRel",
    "TranslateYRel",
)
FILTERS = ("bilinear", "bicubic")
_LEVEL_DENOM = 10.0
_CROP_DRAWS = 23  # clmae.data.transforms.augment.crop_params: 10 x (area, ratio), top, left, flip
_OP_DRAWS = 5  # per RandAugment layer: which op, apply?, magnitude (2, Box-Muller), sign
_ERASE_DRAWS = 23  # apply?, 10 x (area, ratio), top, left


@dataclass
class RandAugmentSpec:
    """timm's RandAugment as data: op names, per-op probability, magnitude, its std and upper bound, layers."""

    ops: tuple[str, ...]
    prob: float
    magnitude: float
    magnitude_std: float
    magnitude_max: float
    num_layers: int


def rand_augment_spec(spec: str | None, mean: Sequence[float]) -> RandAugmentSpec | None:
    """Parse ``spec`` with timm; ``None`` for no RandAugment.

    Raises:
        ValueError: for specs this module does not reproduce (AutoAugment, AugMix, weighted or non-increasing ops,
            per-op settings that differ).
    """
    if spec is None:
        return None
    from timm.data.auto_augment import rand_augment_transform

    if not spec.startswith("rand"):
        raise ValueError(f"only timm's RandAugment ('rand-...') runs on the device, not {spec!r}")
    ra = rand_augment_transform(spec, {"img_mean": tuple(min(255, round(255 * m)) for m in mean)})
    ops = ra.ops
    names = tuple(op.name for op in ops)
    if ra.choice_weights is not None or any(n not in SUPPORTED_OPS for n in names):
        raise ValueError(f"RandAugment {spec!r} uses ops or weights not done on the device ({names})")
    first = ops[0]
    settings = {(op.prob, op.magnitude, op.magnitude_std, op.magnitude_max) for op in ops}
    if len(settings) != 1:
        raise ValueError(f"RandAugment {spec!r}: ops with different settings are not done on the device")
    return RandAugmentSpec(
        names,
        float(first.prob),
        float(first.magnitude),
        float(first.magnitude_std),
        float(first.magnitude_max or _LEVEL_DENOM),
        int(ra.num_layers),
    )


def _level(x: torch.Tensor) -> torch.Tensor:
    return x.round().clamp(0, 255)


def _blend(degenerate: torch.Tensor, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Pillow's ``Image.blend(degenerate, x, factor)`` on 8-bit images: clipped, truncated."""
    return (degenerate + factor * (x - degenerate)).clamp(0, 255).floor()


def _autocontrast(x: torch.Tensor) -> torch.Tensor:
    """Pillow's ``ImageOps.autocontrast`` (no cut-off), per channel, in float64 as Pillow's LUT."""
    xd = x.double()
    lo, hi = xd.amin((2, 3), keepdim=True), xd.amax((2, 3), keepdim=True)
    scale = 255.0 / (hi - lo).clamp_min(1)
    out = (xd * scale + (-lo * scale)).floor().clamp(0, 255).to(x.dtype)
    return torch.where(hi > lo, out, x)


def _equalize(x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    flat = x.reshape(b * c, h * w).long()
    hist = torch.zeros(b * c, 256, device=x.device).scatter_add_(1, flat, torch.ones_like(flat, dtype=torch.float32))
    last = hist.gather(1, flat.amax(1, keepdim=True))  # count of the brightest level (the last non-empty bin)
    step = ((h * w - last) / 255).floor()  # [BC, 1]
    before = hist.cumsum(1) - hist  # pixels below each level
    lut = ((step / 2).floor() + before).div(step.clamp_min(1)).floor().clamp(max=255)
    out = lut.gather(1, flat).reshape(b, c, h, w)
    return torch.where(step.reshape(b, c, 1, 1) > 0, out, x)


def _smooth(x: torch.Tensor) -> torch.Tensor:
    """PIL's ``ImageFilter.SMOOTH`` (3x3, centre 5, others 1, / 13; rounded; border pixels kept)."""
    c = x.shape[1]
    k = torch.ones(c, 1, 3, 3, device=x.device, dtype=x.dtype)
    k[:, :, 1, 1] = 5
    inner = _level(F.conv2d(x, k / 13, groups=c))
    out = x.clone()
    out[:, :, 1:-1, 1:-1] = inner
    return out


def _affine(x: torch.Tensor, theta: torch.Tensor, fill: torch.Tensor, mode: str) -> torch.Tensor:
    """Resample ``x`` at ``theta`` (``[N, 2, 3]``, output pixel centre -> input point, in pixels), filled with ``fill``
    outside, rounded to grey levels."""
    n, c, h, w = x.shape
    ys, xs = torch.meshgrid(
        torch.arange(h, device=x.device, dtype=x.dtype) + 0.5,
        torch.arange(w, device=x.device, dtype=x.dtype) + 0.5,
        indexing="ij",
    )
    pts = torch.stack([xs, ys, torch.ones_like(xs)], -1).reshape(1, h * w, 3)
    src = pts @ theta.transpose(1, 2)  # [N, HW, 2]
    grid = torch.stack([src[..., 0] / w * 2 - 1, src[..., 1] / h * 2 - 1], -1).reshape(n, h, w, 2)
    fill = fill.view(1, c, 1, 1)
    out = F.grid_sample(x - fill, grid, mode=mode, padding_mode="zeros", align_corners=False) + fill
    return _level(out)


class DeviceTrainAugment:
    """The fine-tuning augmentation of :func:`~clmae.data.transforms.pil.train_transform`, batched on the device.

    Args:
        cfg: the model's data config (``input_size``, ``mean``, ``std``, ``interpolation``).
        scale: RandomResizedCrop area range.
        hflip: flip probability.
        auto_augment: timm RandAugment spec or ``None``.
        re_prob: random-erasing probability.
        seed: seeds the erasing noise's generator.

    Raises:
        ValueError: for settings it does not reproduce (see :func:`rand_augment_spec`; filters other than bilinear
            and bicubic); the caller then keeps the PIL pipeline.
    """

    def __init__(
        self,
        cfg: dict[str, Any],
        *,
        scale: tuple[float, float],
        hflip: float,
        auto_augment: str | None,
        re_prob: float,
        seed: int = 0,
    ) -> None:
        self.size, self.channels = int(cfg["input_size"][-1]), int(cfg["input_size"][0])
        self.mean, self.std = tuple(cfg["mean"]), tuple(cfg["std"])
        self.filter = cfg.get("interpolation") or "bicubic"
        if self.filter not in FILTERS:
            raise ValueError(f"the device augmentation resamples with {FILTERS}, not {self.filter!r}")
        self.scale, self.hflip, self.re_prob, self.seed = tuple(scale), float(hflip), float(re_prob), seed
        self.ra = rand_augment_spec(auto_augment, self.mean)
        self.fill = tuple(float(min(255, round(255 * m))) for m in self.mean)  # timm's img_mean
        self._gen: torch.Generator | None = None

    def draws(self) -> int:
        """Uniform numbers used per sample."""
        return _CROP_DRAWS + _OP_DRAWS * (self.ra.num_layers if self.ra else 0) + _ERASE_DRAWS

    def __call__(self, images: torch.Tensor, seeds: torch.Tensor) -> torch.Tensor:
        """uint8 ``[B, H, W]`` (or ``[B, C, H, W]``) images and ``[B]`` int64 seeds -> normalised ``[B, C, size,
        size]`` float32, on the images' device."""
        x = images.unsqueeze(1) if images.ndim == 3 else images
        dev = x.device
        seeds = seeds.to(dev)
        u = uniform(seeds, self.draws())  # float64
        top, left, h, w, _ = crop_params(seeds, x.shape[2], x.shape[3], self.scale)
        flip = u[:, 22] < self.hflip
        x = self._crop(x, top, left, h, w, flip)  # grey levels 0..255 (float)
        if self.channels == 3 and x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if self.ra is not None:
            for layer in range(self.ra.num_layers):
                x = self._rand_augment_layer(x, u[:, _CROP_DRAWS + _OP_DRAWS * layer :])
        x = normalize(x / 255.0, self.mean, self.std)
        if self.re_prob > 0:
            x = self._erase(x, u[:, -_ERASE_DRAWS:])
        return x

    def _crop(self, x, top, left, h, w, flip) -> torch.Tensor:
        n, _, H, W = x.shape
        wy = resample_matrix(top, h, self.size, H, self.filter).float()
        wx = resample_matrix(left, w, self.size, W, self.filter)
        wx = torch.where(flip.view(n, 1, 1), wx.flip(1), wx).float()
        x = _level(torch.einsum("nchw,nxw->nchx", x.float(), wx))  # PIL: horizontal pass first, rounded
        return _level(torch.einsum("nyh,nchx->ncyx", wy, x))

    def _rand_augment_layer(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        ra, n = self.ra, x.shape[0]
        op = (u[:, 0] * len(ra.ops)).long().clamp(max=len(ra.ops) - 1)  # np.random.choice, with replacement
        apply = u[:, 1] <= ra.prob  # timm skips when random() > prob
        m = torch.full((n,), ra.magnitude, dtype=torch.float64, device=x.device)
        if ra.magnitude_std == float("inf"):
            m = u[:, 2] * ra.magnitude
        elif ra.magnitude_std > 0:  # random.gauss, by Box-Muller
            m = m + ra.magnitude_std * torch.sqrt(-2 * torch.log(u[:, 2])) * torch.cos(2 * math.pi * u[:, 3])
        m = m.clamp(0, ra.magnitude_max)
        sign = torch.where(u[:, 4] > 0.5, -1.0, 1.0).to(torch.float64)  # timm's _randomly_negate
        level = m / _LEVEL_DENOM

        def per_sample(v: torch.Tensor) -> torch.Tensor:
            return v.to(x.dtype).view(n, 1, 1, 1)

        enhance = per_sample((1.0 + sign * level * 0.9).clamp_min(0.1))
        bits = 4 - (level * 4).floor()  # PosterizeIncreasing: bits kept, 0 (black) at magnitude 10
        black = per_sample(bits <= 0) > 0
        keep = per_sample(2.0 ** (8 - bits.clamp(min=1)))
        thresh = per_sample(256 - (level * 256).floor().clamp(max=256))
        add = per_sample((level * 110).floor().clamp(max=128))
        grey_mean = (x.mean((1, 2, 3), keepdim=True) + 0.5).floor()  # ImageStat mean of the L image, rounded

        # geometric ops: one affine map per sample, identity where the op is not geometric
        theta = torch.zeros(n, 2, 3, dtype=torch.float64, device=x.device)
        theta[:, 0, 0] = theta[:, 1, 1] = 1
        size_x, size_y = x.shape[3], x.shape[2]
        name_of = {name: i for i, name in enumerate(ra.ops)}
        geometric = torch.zeros(n, dtype=torch.bool, device=x.device)
        for name in ("Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel"):
            if name not in name_of:
                continue
            sel = apply & (op == name_of[name])
            geometric |= sel
            if name == "Rotate":  # PIL's rotate(deg) about the centre, counter-clockwise
                a = -torch.deg2rad(sign * level * 30)
                cx, cy = size_x / 2, size_y / 2
                rot = torch.stack(
                    [
                        torch.stack([a.cos(), a.sin(), cx - a.cos() * cx - a.sin() * cy], 1),
                        torch.stack([-a.sin(), a.cos(), cy + a.sin() * cx - a.cos() * cy], 1),
                    ],
                    1,
                )
                theta = torch.where(sel.view(n, 1, 1), rot, theta)
            elif name == "ShearX":
                theta[:, 0, 1] = torch.where(sel, sign * level * 0.3, theta[:, 0, 1])
            elif name == "ShearY":
                theta[:, 1, 0] = torch.where(sel, sign * level * 0.3, theta[:, 1, 0])
            elif name == "TranslateXRel":
                theta[:, 0, 2] = torch.where(sel, sign * level * 0.45 * size_x, theta[:, 0, 2])
            else:
                theta[:, 1, 2] = torch.where(sel, sign * level * 0.45 * size_y, theta[:, 1, 2])
        fill = torch.as_tensor(self.fill * (x.shape[1] // len(self.fill)), dtype=x.dtype, device=x.device)
        mode = "bicubic" if self.filter == "bicubic" else "bilinear"
        out = torch.where(geometric.view(n, 1, 1, 1), _affine(x, theta.to(x.dtype), fill, mode), x)

        photometric = {
            "AutoContrast": lambda: _autocontrast(x),
            "Equalize": lambda: _equalize(x),
            "Invert": lambda: 255 - x,
            "PosterizeIncreasing": lambda: torch.where(black, torch.zeros_like(x), (x / keep).floor() * keep),
            "SolarizeIncreasing": lambda: torch.where(x >= thresh, 255 - x, x),
            "SolarizeAdd": lambda: torch.where(x < 128, (x + add).clamp(max=255), x),
            "ContrastIncreasing": lambda: _blend(grey_mean.expand_as(x), x, enhance),
            "BrightnessIncreasing": lambda: _blend(torch.zeros_like(x), x, enhance),
            "SharpnessIncreasing": lambda: _blend(_smooth(x), x, enhance),
        }
        for name, fn in photometric.items():
            if name in name_of:
                sel = (apply & (op == name_of[name])).view(n, 1, 1, 1)
                out = torch.where(sel, fn(), out)
        return out

    def _erase(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """timm's ``RandomErasing(re_prob, mode="pixel", max_count=1)`` on normalised images."""
        n, _, H, W = x.shape
        area = H * W
        target = area * (0.02 + (1 / 3 - 0.02) * u[:, 1:21:2])  # [N, 10] attempts
        aspect = torch.exp(math.log(0.3) + (math.log(1 / 0.3) - math.log(0.3)) * u[:, 2:21:2])
        h = torch.round(torch.sqrt(target * aspect))
        w = torch.round(torch.sqrt(target / aspect))
        fits = (w < W) & (h < H)
        first = torch.argmax(fits.to(torch.uint8), dim=1, keepdim=True)
        h, w = h.gather(1, first)[:, 0], w.gather(1, first)[:, 0]
        erase = (u[:, 0] <= self.re_prob) & fits.any(1)
        top = torch.floor(u[:, 21] * (H - h + 1))
        left = torch.floor(u[:, 22] * (W - w + 1))
        rows = torch.arange(H, device=x.device, dtype=torch.float64).view(1, H, 1)
        cols = torch.arange(W, device=x.device, dtype=torch.float64).view(1, 1, W)
        box = (
            (rows >= top.view(n, 1, 1))
            & (rows < (top + h).view(n, 1, 1))
            & (cols >= left.view(n, 1, 1))
            & (cols < (left + w).view(n, 1, 1))
            & erase.view(n, 1, 1)
        )
        if self._gen is None or self._gen.device != x.device:
            self._gen = torch.Generator(device=x.device).manual_seed(self.seed)
        noise = torch.randn(x.shape, generator=self._gen, device=x.device, dtype=x.dtype)
        return torch.where(box.unsqueeze(1), noise, x)
