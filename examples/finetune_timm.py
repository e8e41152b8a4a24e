"""Fine-tune a pretrained encoder with plain timm code: no clmae import in the training loop.

A clmae weights folder (or Hub repo) is a timm checkpoint: ``timm.create_model("local-dir:<folder>")`` or
``timm.create_model("hf-hub:<org>/<repo>")`` builds it with a fresh classifier head, timm's optimizer factory gives
MAE's layer-wise learning-rate decay, and timm's transforms read the preprocessing from ``model.pretrained_cfg``.

    python examples/finetune_timm.py --model local-dir:path/to/weights_folder --epochs 3
    python examples/finetune_timm.py --model hf-hub:timm/vit_base_patch16_224.mae --limit 200 --epochs 1
"""

import argparse

import timm
import torch
from PIL import Image
from timm.loss import LabelSmoothingCrossEntropy
from timm.optim import create_optimizer_v2

from clmae.data.fashion_mnist import SAMPLE_ROOT, load_fashion_mnist


def to_batch(transform, images, mode):
    return torch.stack([transform(Image.fromarray(img.numpy()).convert(mode)) for img in images])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="timm name: local-dir:/path or hf-hub:org/repo[@revision]")
    parser.add_argument("--root", default=str(SAMPLE_ROOT), help="Fashion-MNIST IDX folder (default: bundled sample)")
    parser.add_argument("--limit", type=int, default=1000, help="images per split (default: 1000)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--layer-decay", type=float, default=0.75, help="MAE's layer-wise LR decay")
    args = parser.parse_args()
    torch.manual_seed(0)

    # Average pooling of the patch tokens and drop-path 0.1, as MAE fine-tunes (fc_norm=False keeps the pretrained final
    # norm in place: MAE's fresh fc_norm has no weights in the checkpoint, so a strict load would refuse it).
    model = timm.create_model(
        args.model, pretrained=True, num_classes=10, global_pool="avg", fc_norm=False, drop_path_rate=0.1
    )
    cfg = timm.data.resolve_data_config({}, model=model)
    transform = timm.data.create_transform(**cfg)
    mode = "L" if cfg["input_size"][0] == 1 else "RGB"
    optimizer = create_optimizer_v2(model, "adamw", lr=args.lr, weight_decay=0.05, layer_decay=args.layer_decay)
    criterion = LabelSmoothingCrossEntropy(smoothing=0.1)

    train_x, train_y = (t[: args.limit] for t in load_fashion_mnist("train", args.root))
    test_x, test_y = (t[: args.limit] for t in load_fashion_mnist("test", args.root))
    train_x = to_batch(transform, train_x, mode)
    test_x = to_batch(transform, test_x, mode)
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(train_x))
        for i in range(0, len(perm), args.batch_size):
            idx = perm[i : i + args.batch_size]
            loss = criterion(model(train_x[idx]), train_y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            acc = torch.cat([model(test_x[i : i + 200]).argmax(1) for i in range(0, len(test_x), 200)])
        print(f"epoch {epoch}: last loss {loss.item():.4f}, test accuracy {(acc == test_y).float().mean().item():.4f}")


if __name__ == "__main__":
    main()
