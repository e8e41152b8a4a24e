"""The CL-MAE iteration written out with the public API: MAE update, then masking-module update.

Runs on a CPU in one to two minutes on the Fashion-MNIST sample that ships with clmae:

    python examples/pretrain_loop.py
"""

import torch

import clmae
from clmae.data import SAMPLE_ROOT, load_fashion_mnist, to_float

torch.manual_seed(0)
images = to_float(load_fashion_mnist("train", root=SAMPLE_ROOT)[0])  # [1000, 1, 28, 28], normalised
model = clmae.create_pretraining_model("vit_tiny_patch4_28", method="clmae", depth=6)
mae_opt, masker_opt = clmae.build_optimizers(model, lr=1e-3)

epochs, batch = 4, 100
for epoch in range(epochs):
    lam = clmae.curriculum_factor(epoch, epochs)  # +1 (partner) ... -1 (adversary)
    for i in range(0, len(images), batch):
        x = images[i : i + batch]
        # 1) MAE step: the masking module's top-K scores choose the visible patches.
        mae_opt.zero_grad(set_to_none=True)
        out = model.forward_mae(x)
        out["loss"].backward()
        mae_opt.step()
        # 2) Masking-module step: soft masks through the frozen, just-updated encoder and decoder.
        masker_opt.zero_grad(set_to_none=True)
        m = model.forward_masker(x, lam)
        m["loss"].backward()
        masker_opt.step()
    print(
        f"epoch {epoch} lambda {lam:+.2f}: MAE loss {out['loss'].item():.3f}, masker loss {m['loss'].item():.3f} "
        f"(rec {m['rec'].item():.3f}, gauss {m['gauss'].item():.3f}, kl {m['kl'].item():.3f}, "
        f"div {m['div'].item():.3f})"
    )

# The part to keep is a plain timm VisionTransformer.
encoder = model.encoder.eval()
features = encoder.forward_head(encoder.forward_features(images[:8]), pre_logits=True)
print("features", tuple(features.shape))
