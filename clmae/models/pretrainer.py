"""The CL-MAE pretraining model: a timm ViT encoder, MAE's decoder and (for CL-MAE) the masking module.

One training iteration is two separate calls on the same batch (method: Madan et al., CL-MAE, WACV 2024):

1. :meth:`CLMAE.forward_mae` -- the MAE step. The masking module (frozen, no autograd graph) scores the patches, the
   top-K are kept and the encoder/decoder are trained with MAE's masked MSE. ``method="mae"`` uses MAE's uniform
   random masks instead: the baseline.
2. :meth:`CLMAE.forward_masker` -- the masking-module step. Every patch token is scaled by its keep-score, all
   tokens pass the frozen encoder and decoder (activation gradients only) and the masking module is trained on
   ``lam * L_rec + L_gauss + L_kl + L_div``, where ``lam`` is the curriculum factor (+1 partner ... -1 adversary).

See :func:`clmae.train.train_step` for the full iteration with both optimizers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from . import losses
from .decoder import MAEDecoder
from .masker import MaskingModule
from .masking import num_keep, random_masking, topk_masking
from .patches import patchify


@contextlib.contextmanager
def _frozen(*modules: nn.Module) -> Iterator[None]:
    """Temporarily stop weight gradients of ``modules``; activation gradients still flow through them.

    Autograd decides at forward time which inputs of an op need gradients, so a graph built inside this context
    never computes (nor stores activations for) these weights' gradients, even if ``backward`` runs later.
    """
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def _autocast_enabled(device: torch.device) -> bool:
    try:
        return torch.is_autocast_enabled(device.type)
    except TypeError:  # torch < 2.4: no device argument
        return torch.is_autocast_enabled() if device.type == "cuda" else torch.is_autocast_cpu_enabled()


class CLMAE(nn.Module):
    """CL-MAE (or plain MAE) pretraining wrapper around a timm ``VisionTransformer``.

    Build it with :func:`clmae.create_pretraining_model`. Attributes ``encoder`` (the timm model, the part to keep),
    ``decoder`` (:class:`MAEDecoder`) and ``masker`` (:class:`MaskingModule`, ``None`` for MAE).

    Args:
        encoder: a timm ``VisionTransformer`` with a class token, no register tokens and positions on the class token.
        decoder: the MAE decoder.
        masker: the masking module, or ``None`` for MAE's uniform random masking.
        mask_ratio: fraction of patches removed in the MAE step (reference: 0.75).
        norm_pix_loss: per-patch normalised pixel targets (MAE's option; reference CL-MAE script: off).
        gauss_sigma: width of the Gaussian term (reference: 0.12).
        gauss_weight: weight of the Gaussian term (reference: 1.0).
        kl_weight: weight of the KL term (reference: 0.1).
        kl_batch_scale: the KL term is the batch mean times this (reference: a sum over a per-GPU batch of 256).
        div_weight: weight of the diversity term (reference: 2.0).
        div_scale: distance scale inside the diversity term's exponential (reference: 0.1).
    """

    def __init__(
        self,
        encoder: VisionTransformer,
        decoder: MAEDecoder,
        masker: MaskingModule | None,
        mask_ratio: float = 0.75,
        norm_pix_loss: bool = False,
        gauss_sigma: float = losses.GAUSS_SIGMA,
        gauss_weight: float = losses.GAUSS_WEIGHT,
        kl_weight: float = losses.KL_WEIGHT,
        kl_batch_scale: float = losses.KL_BATCH_SCALE,
        div_weight: float = losses.DIV_WEIGHT,
        div_scale: float = losses.DIV_SCALE,
    ) -> None:
        super().__init__()
        if (
            getattr(encoder, "cls_token", None) is None
            or getattr(encoder, "num_prefix_tokens", 1) != 1
            or getattr(encoder, "no_embed_class", False)
            or getattr(encoder, "pos_embed", None) is None
            or getattr(encoder, "dynamic_img_size", False)
        ):
            raise ValueError(
                "the encoder must be a timm VisionTransformer with class_token=True, reg_tokens=0, "
                "no_embed_class=False and dynamic_img_size=False (MAE's layout)"
            )
        if isinstance(getattr(encoder, "norm", None), nn.Identity):
            # timm moves the final norm to fc_norm for global_pool='avg'; pretraining needs it on every token.
            raise ValueError(
                "the encoder has no final norm on its tokens (timm's global_pool='avg' or fc_norm=True moves it to "
                "the pooled feature); pretrain with the default global_pool='token', or pass fc_norm=False"
            )
        self.encoder = encoder
        self.decoder = decoder
        self.masker = masker
        self.patch_size = encoder.patch_embed.patch_size[0]
        self.img_size = tuple(encoder.patch_embed.img_size)
        self.in_chans = encoder.patch_embed.proj.in_channels
        self.num_patches = encoder.patch_embed.num_patches
        self.mask_ratio = mask_ratio
        self.len_keep = num_keep(self.num_patches, mask_ratio)
        self.norm_pix_loss = norm_pix_loss
        self.gauss_sigma = gauss_sigma
        self.gauss_weight = gauss_weight
        self.kl_weight = kl_weight
        self.kl_batch_scale = kl_batch_scale
        self.div_weight = div_weight
        self.div_scale = div_scale
        self.config: dict = {}  # set by create_pretraining_model: its arguments, to rebuild this model

    @property
    def method(self) -> str:
        """``"clmae"`` with a masking module, ``"mae"`` without."""
        return "mae" if self.masker is None else "clmae"

    def check_images(self, imgs: torch.Tensor) -> None:
        """Raise a ``ValueError`` unless ``imgs`` is a float ``[N, C, H, W]`` batch this model accepts."""
        c, (h, w) = self.in_chans, self.img_size
        expected = f"a float tensor [N, {c}, {h}, {w}]"
        if not isinstance(imgs, torch.Tensor):
            raise ValueError(f"images must be {expected}, got {type(imgs).__name__}")
        if imgs.ndim != 4:
            raise ValueError(f"images must be {expected}, got shape {tuple(imgs.shape)}")
        if not imgs.is_floating_point():
            raise ValueError(
                f"images must be {expected}, got dtype {imgs.dtype}; convert with imgs.float() / 255 and normalise"
            )
        weight_dtype = self.encoder.patch_embed.proj.weight.dtype
        if imgs.dtype != weight_dtype and not _autocast_enabled(imgs.device):
            raise ValueError(
                f"images are {imgs.dtype} but the model's weights are {weight_dtype}; convert them with "
                f"imgs.to({weight_dtype}) or run under torch.autocast"
            )
        if imgs.shape[1] != c:
            raise ValueError(f"images must have {c} channel(s) ({expected}), got {imgs.shape[1]}")
        if tuple(imgs.shape[2:]) != (h, w):
            raise ValueError(
                f"images must be {h}x{w} ({expected}), got {imgs.shape[2]}x{imgs.shape[3]}; resize or crop them, "
                "or build the model with img_size=..."
            )

    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        """``[N, C, H, W] -> [N, L, p*p*C]``."""
        return patchify(imgs, self.patch_size)

    def embed(self, imgs: torch.Tensor) -> torch.Tensor:
        """Patch tokens with positions, ``e = patch_embed(x) + pos[1:]``: ``[N, C, H, W] -> [N, L, D]``."""
        return self.encoder.patch_embed(imgs) + self.encoder.pos_embed[:, 1:]

    def forward_encoder(self, tokens: torch.Tensor) -> torch.Tensor:
        """Run the encoder on patch tokens that already carry their positions.

        Args:
            tokens: ``[N, T, D]``: the K visible tokens (MAE step) or all L soft-masked tokens (masker step).

        Returns:
            ``[N, 1 + T, D]``, CLS first, after the final norm (as ``forward_features``).
        """
        cls = (self.encoder.cls_token + self.encoder.pos_embed[:, :1]).to(tokens.dtype)
        x = torch.cat([cls.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        x = self.encoder.norm_pre(x)
        x = self.encoder.blocks(x)
        return self.encoder.norm(x)

    def forward_soft(self, tokens: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """Soft masking: scale every token by its keep-score, encode all of them, decode every patch.

        Args:
            tokens: patch tokens with positions ``[N, L, D]`` (from :meth:`embed`).
            scores: keep-scores ``[N, L]``; all ones gives the plain unmasked forward.

        Returns:
            predicted patches ``[N, L, p*p*C]``.
        """
        latent = self.forward_encoder(scores.unsqueeze(-1).to(tokens.dtype) * tokens)  # [N, 1 + L, D], CLS unscaled
        return self.decoder(latent)  # all L tokens present: no mask tokens

    def targets(self, imgs: torch.Tensor) -> torch.Tensor:
        """Reconstruction targets ``[N, L, p*p*C]`` (float32, per-patch normalised if ``norm_pix_loss``)."""
        return losses.patch_targets(self.patchify(imgs), self.norm_pix_loss)

    def forward_mae(self, imgs: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """The MAE step: masks from the masking module's top-K (or uniform random for MAE), masked-MSE loss.

        The masking module runs without an autograd graph, so this loss never reaches it.

        Args:
            imgs: ``[N, C, H, W]``.
            generator: random masks only (``method="mae"``): generator on the images' device.

        Returns:
            ``loss`` (scalar), ``pred [N, L, p*p*C]``, ``mask [N, L]`` (0 keep, 1 remove).
        """
        self.check_images(imgs)
        tokens = self.embed(imgs)  # [N, L, D]
        if self.masker is None:
            visible, mask, ids_restore = random_masking(tokens, self.len_keep, generator)
        else:
            with torch.no_grad():
                scores = self.masker(tokens)  # [N, L]
            visible, mask, ids_restore = topk_masking(tokens, scores, self.len_keep)
        latent = self.forward_encoder(visible)  # [N, 1 + K, D]
        pred = self.decoder(latent, ids_restore)  # [N, L, p*p*C]
        loss = losses.masked_mse(losses.patch_errors(pred, self.targets(imgs)), mask)
        return {"loss": loss, "pred": pred, "mask": mask}

    def forward_masker(self, imgs: torch.Tensor, lam: float | torch.Tensor) -> dict[str, torch.Tensor]:
        """The masking-module step: soft masks through the frozen encoder and decoder.

        Every patch token is multiplied by its keep-score (positions included), all L tokens plus the unscaled CLS
        go through the encoder, and the decoder reconstructs every patch from them (no mask tokens). Encoder and
        decoder weights get no gradient; only the masking module's do.

        Args:
            imgs: ``[N, C, H, W]``.
            lam: the curriculum factor lambda_cl (see :func:`clmae.curriculum_factor`).

        Returns:
            ``loss = lam * rec + gauss + kl + div``; ``rec`` (unweighted L_rec); ``gauss``, ``kl``, ``div`` (as they
            enter the loss, weighted); ``scores [N, L]``.
        """
        if self.masker is None:
            raise ValueError("this model was built with method='mae' and has no masking module to train")
        self.check_images(imgs)
        with _frozen(self.encoder, self.decoder):
            tokens = self.embed(imgs)  # [N, L, D], from the just-updated patch embedding
            scores = self.masker(tokens)  # [N, L], with gradient
            pred = self.forward_soft(tokens, scores)  # [N, L, p*p*C]
        errors = losses.patch_errors(pred, self.targets(imgs))  # [N, L]
        rec = losses.soft_reconstruction_loss(errors, scores)
        gauss = losses.gaussian_loss(scores, self.gauss_sigma, self.gauss_weight)
        kl = losses.kl_loss(scores, 1.0 - self.mask_ratio, self.kl_weight, self.kl_batch_scale)
        div = losses.diversity_loss(scores, self.div_weight, self.div_scale)
        loss = lam * rec + gauss + kl + div
        return {"loss": loss, "rec": rec, "gauss": gauss, "kl": kl, "div": div, "scores": scores}

    def forward(self, imgs: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Same as :meth:`forward_mae` (what a plain ``model(imgs)`` call, e.g. under DDP, should run)."""
        return self.forward_mae(imgs, generator)
