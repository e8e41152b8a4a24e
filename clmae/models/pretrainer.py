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
from .checks import check_input
from .config import PretrainingConfig
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


def _module_sizes(decoder: MAEDecoder, masker: MaskingModule | None) -> dict:
    """The :class:`PretrainingConfig` decoder and masking-module fields of built modules."""
    sizes = {
        "decoder_embed_dim": decoder.embed.out_features,
        "decoder_depth": len(decoder.blocks),
        "norm_eps": decoder.norm.eps,
    }
    if len(decoder.blocks):
        sizes["decoder_num_heads"] = decoder.blocks[0].attn.num_heads
    if masker is not None:
        sizes["masker_depth"] = len(masker.blocks)
        if len(masker.blocks):
            sizes["masker_num_heads"] = masker.blocks[0].attn.num_heads
            sizes["masker_mlp_ratio"] = masker.blocks[0].mlp.fc1.out_features / masker.embed_dim
            sizes["masker_norm_eps"] = masker.blocks[0].norm1.eps
    return sizes


class CLMAE(nn.Module):
    """CL-MAE (or plain MAE) pretraining wrapper around a timm ``VisionTransformer``.

    Build it with :func:`clmae.create_pretraining_model`. Attributes ``encoder`` (the timm model, the part to keep),
    ``decoder`` (:class:`MAEDecoder`), ``masker`` (:class:`MaskingModule`, ``None`` for MAE) and ``config`` (the
    :class:`~clmae.models.config.PretrainingConfig` that rebuilds it: ``create_pretraining_model(model.config)``).

    Args:
        encoder: a timm ``VisionTransformer`` with a class token, no register tokens and positions on the class token.
        decoder: the MAE decoder.
        masker: the masking module, or ``None`` for MAE's uniform random masking.
        config: mask ratio, pixel targets and loss weights (its ``arch`` names the encoder's architecture, which
            ``save_pretrained`` needs); default: the reference values, with ``method`` taken from ``masker``.
    """

    def __init__(
        self,
        encoder: VisionTransformer,
        decoder: MAEDecoder,
        masker: MaskingModule | None,
        config: PretrainingConfig | None = None,
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
        method = "mae" if masker is None else "clmae"
        if config is None:  # the reference values, and the sizes read off the modules
            config = PretrainingConfig(arch="", method=method, **_module_sizes(decoder, masker))
        elif config.method != method:
            raise ValueError(f"config.method is {config.method!r} but the model is {method!r} (masker={masker!r})")
        self.encoder = encoder
        self.decoder = decoder
        self.masker = masker
        self.config = config
        self.patch_size = encoder.patch_embed.patch_size[0]
        self.img_size = tuple(encoder.patch_embed.img_size)
        self.in_chans = encoder.patch_embed.proj.in_channels
        self.num_patches = encoder.patch_embed.num_patches
        self.len_keep = num_keep(self.num_patches, config.mask_ratio)

    @property
    def mask_ratio(self) -> float:
        """Fraction of patches hidden in the MAE step."""
        return self.config.mask_ratio

    @property
    def norm_pix_loss(self) -> bool:
        """Whether the targets are per-patch normalised pixels."""
        return self.config.norm_pix_loss

    @property
    def method(self) -> str:
        """``"clmae"`` with a masking module, ``"mae"`` without."""
        return "mae" if self.masker is None else "clmae"

    def check_images(self, imgs: torch.Tensor) -> None:
        """Raise a ``ValueError`` unless ``imgs`` is a float ``[N, C, H, W]`` batch this model accepts."""
        check_input(self.encoder, imgs)

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
        c = self.config
        gauss = losses.gaussian_loss(scores, c.gauss_sigma, c.gauss_weight)
        kl = losses.kl_loss(scores, 1.0 - c.mask_ratio, c.kl_weight, c.kl_batch_scale)
        div = losses.diversity_loss(scores, c.div_weight, c.div_scale)
        loss = lam * rec + gauss + kl + div
        return {"loss": loss, "rec": rec, "gauss": gauss, "kl": kl, "div": div, "scores": scores}

    def forward(self, imgs: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Same as :meth:`forward_mae` (what a plain ``model(imgs)`` call, e.g. under DDP, should run)."""
        return self.forward_mae(imgs, generator)
