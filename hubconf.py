"""``torch.hub`` entry points: ``torch.hub.load("<owner>/clmae", "load_pretrained", "vit_base_patch16_224.mae")``.

Each weight entry returns a plain timm ``VisionTransformer`` (eval mode, preprocessing in ``model.pretrained_cfg``);
``create_model`` is timm's (train mode). Weights come from the package or the Hugging Face Hub through clmae's
registry (pinned and checked where the registry pins them). Keyword arguments are timm's: ``in_chans=3``,
``patch_size`` and ``img_size`` adapt the weights as ``timm.create_model(..., pretrained=True)`` does.
"""

dependencies = ["torch", "timm", "huggingface_hub", "safetensors"]

from clmae import create_model, load_pretrained  # noqa: E402  (torch.hub reads `dependencies` first)


def clmae_vit_t_fmnist(**kwargs):
    """CL-MAE ViT-T/4 trained by clmae on Fashion-MNIST (28 px, 1 channel; Apache-2.0; ships inside the package)."""
    return load_pretrained("clmae_vit_t_fmnist", **kwargs)


def mae_vit_t_fmnist(**kwargs):
    """MAE ViT-T/4 baseline trained alongside ``clmae_vit_t_fmnist`` (same architecture, data and schedule)."""
    return load_pretrained("mae_vit_t_fmnist", **kwargs)


def mae_vit_b(**kwargs):
    """MAE ViT-B/16 ImageNet encoder (He et al., 2022; timm's conversion; cc-by-nc-4.0)."""
    return load_pretrained("vit_base_patch16_224.mae", **kwargs)


def mae_vit_l(**kwargs):
    """MAE ViT-L/16 ImageNet encoder (He et al., 2022; timm's conversion; cc-by-nc-4.0)."""
    return load_pretrained("vit_large_patch16_224.mae", **kwargs)


def mae_vit_h(**kwargs):
    """MAE ViT-H/14 ImageNet encoder (He et al., 2022; timm's conversion; cc-by-nc-4.0)."""
    return load_pretrained("vit_huge_patch14_224.mae", **kwargs)


def clmae_vit_b(**kwargs):
    """CL-MAE ViT-B/16 ImageNet encoder (not yet published: raises an error that says how to train it)."""
    return load_pretrained("clmae_vit_b", **kwargs)


# The short names: CL-MAE is this package's method.
vit_t_fmnist = clmae_vit_t_fmnist
vit_b = clmae_vit_b


__all__ = [
    "clmae_vit_b",
    "clmae_vit_t_fmnist",
    "create_model",
    "load_pretrained",
    "mae_vit_b",
    "mae_vit_h",
    "mae_vit_l",
    "mae_vit_t_fmnist",
    "vit_b",
    "vit_t_fmnist",
]
