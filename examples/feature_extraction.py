"""Frozen features from a pretrained encoder, scored with a weighted kNN classifier on Fashion-MNIST.

The encoder is a plain timm ``VisionTransformer``; its preprocessing comes from ``model.pretrained_cfg`` through
timm's own ``resolve_data_config``/``create_transform``, so the same code works for a 28 px one-channel model and a
224 px RGB one (Fashion-MNIST images are resized and repeated to RGB by the transform's input mode).

    python examples/feature_extraction.py                                       # the bundled CL-MAE (vit_t_fmnist)
    python examples/feature_extraction.py --model mae_vit_t_fmnist              # the bundled MAE baseline
    python examples/feature_extraction.py --model path/to/weights_folder        # a clmae.save_pretrained() folder
    python examples/feature_extraction.py --model vit_base_patch16_224.mae --limit 200   # MAE ViT-B (downloads)

For a folder of your own images, use the command line instead: ``clmae extract MODEL IMAGES_DIR features``.
"""

import argparse

import timm
import torch
import torch.nn.functional as F
from PIL import Image

from clmae.data.fashion_mnist import SAMPLE_ROOT, load_fashion_mnist
from clmae.hub import load_pretrained


@torch.no_grad()
def encode(model, transform, images, mode, batch_size=100):
    """uint8 ``[N, 28, 28]`` -> pooled features ``[N, D]`` (the model's own pooling: ``forward_head(pre_logits)``)."""
    feats = []
    for i in range(0, len(images), batch_size):
        batch = [transform(Image.fromarray(img.numpy()).convert(mode)) for img in images[i : i + batch_size]]
        feats.append(model.forward_head(model.forward_features(torch.stack(batch)), pre_logits=True))
    return torch.cat(feats)


def weighted_knn(train_f, train_y, test_f, k=20, t=0.07, num_classes=10):
    """Cosine-similarity kNN with exp(sim / t) votes (Wu et al., 2018; the usual SSL protocol)."""
    sim = F.normalize(test_f, dim=1) @ F.normalize(train_f, dim=1).T  # [N_test, N_train]
    top, idx = sim.topk(k, dim=1)
    votes = torch.zeros(len(test_f), num_classes).scatter_add_(1, train_y[idx], (top / t).exp())
    return votes.argmax(1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model", default="vit_t_fmnist", help="registry name (default: vit_t_fmnist), weights folder, hf-hub:org/repo"
    )
    parser.add_argument("--root", default=str(SAMPLE_ROOT), help="Fashion-MNIST IDX folder (default: bundled sample)")
    parser.add_argument("--limit", type=int, default=1000, help="images per split (default: 1000)")
    args = parser.parse_args()

    model = load_pretrained(args.model)  # eval mode, preprocessing in model.pretrained_cfg
    cfg = timm.data.resolve_data_config({}, model=model)
    transform = timm.data.create_transform(**cfg)
    mode = "L" if cfg["input_size"][0] == 1 else "RGB"
    print(f"{args.model}: input {cfg['input_size']}, mean {cfg['mean']}, std {cfg['std']}")

    train_x, train_y = load_fashion_mnist("train", args.root)
    test_x, test_y = load_fashion_mnist("test", args.root)
    train_x, train_y, test_x, test_y = (t[: args.limit] for t in (train_x, train_y, test_x, test_y))
    train_f = encode(model, transform, train_x, mode)
    test_f = encode(model, transform, test_x, mode)
    pred = weighted_knn(train_f, train_y, test_f)
    print(f"features {tuple(train_f.shape)}; 20-NN accuracy {(pred == test_y).float().mean().item():.4f}")


if __name__ == "__main__":
    main()
