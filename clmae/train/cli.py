"""The ``clmae train`` and ``clmae visualize`` subcommands (:func:`register` adds them to the ``clmae`` command)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..data.spec import forms_help
from ..models.methods import METHODS
from .recipes import list_recipes

# The command line imports no torch: the handlers import what they run (``clmae --help`` stays fast).
_TRAIN_EPILOG = """examples:
  clmae train --recipe clmae_fmnist_tiny --out runs/fmnist
  clmae train --recipe clmae_fmnist_tiny --method mae --out runs/fmnist_mae epochs=20 batch_size=50
  torchrun --standalone --nproc_per_node=8 -m clmae train --recipe clmae_vit_b16_in1k \\
      --data /data/imagenet/train --out runs/clmae_vit_b16
  clmae train --recipe clmae_vit_b16_in1k --data /data/imagenet/train --out runs/clmae_vit_b16 --resume auto
"""


def _train(args: argparse.Namespace) -> int:
    from .config import TrainConfig, resolve_config, save_config
    from .trainer import NonFiniteLossError, train

    if args.list_recipes:
        print("\n".join(list_recipes()))
        return 0
    fields = {"data": args.data, "out": args.out, "method": args.method, "compile": args.compile}
    cfg: TrainConfig = resolve_config(args.recipe, args.overrides, **fields)
    if args.print_config:
        save_config(cfg, "/dev/stdout")
        return 0
    try:
        train(cfg, resume=args.resume)
    except NonFiniteLossError as e:
        print(f"clmae train: stopped: {e}", file=sys.stderr)
        return 1
    return 0


def _visualize(args: argparse.Namespace) -> int:
    from .visualize import visualize_checkpoint

    for path in visualize_checkpoint(args.checkpoint, args.out, args.data, args.num_images, overwrite=args.overwrite):
        print(path)
    return 0


def _export(args: argparse.Namespace) -> int:
    if args.format == "transformers":
        from ..hub import export_vitmae
        from .export import export_checkpoint_vitmae

        path = Path(args.checkpoint)
        write = export_checkpoint_vitmae if path.suffix in (".pt", ".pth") and path.is_file() else export_vitmae
        folder = write(
            args.checkpoint, args.out, decoder=args.decoder, in_chans=args.in_chans, overwrite=args.overwrite
        )
        print(f"transformers ViTMAE folder in {folder}")
        return 0
    if args.decoder:
        raise ValueError("--decoder goes with --format transformers; a clmae export always holds the decoder")
    if args.in_chans is not None:
        raise ValueError("--in-chans goes with --format transformers; clmae.load_pretrained(SPEC, in_chans=3) adapts")
    from .export import export_checkpoint

    print(f"weights in {export_checkpoint(args.checkpoint, args.out, overwrite=args.overwrite)}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train``, ``export`` and ``visualize`` to an argparse ``subparsers`` object (each sets ``func``)."""
    p = subparsers.add_parser(
        "train",
        help="pretrain CL-MAE or the MAE baseline (one GPU/CPU, or under torchrun)",
        description="Pretrain CL-MAE or MAE. Config: defaults < --recipe < flags < key=value overrides.",
        epilog=_TRAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--recipe", help=f"a shipped recipe ({', '.join(list_recipes())}) or a YAML/JSON file")
    p.add_argument(
        "--data",
        help=f"{forms_help()}; see docs/data.md",
    )
    p.add_argument("--out", help="output folder for config, metrics, checkpoints, pictures and weights")
    p.add_argument("--method", choices=METHODS, help="CL-MAE (learned masks) or the MAE baseline")
    p.add_argument(
        "--resume",
        help="'auto' (newest intact checkpoint in --out, if any; also finishes a run whose export was lost) or a "
        "checkpoint file",
    )
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the model's blocks")
    p.add_argument("--list-recipes", action="store_true", help="list the shipped recipes and exit")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. epochs=100")
    p.set_defaults(func=_train)

    e = subparsers.add_parser(
        "export",
        help="write the Hub-ready weights folder of any training checkpoint",
        description="Write the weights folder (config.json, model.safetensors, pretraining.safetensors, card) of a "
        "checkpoint-*.pt written by clmae train; the checkpoint's digest is verified first.",
    )
    e.add_argument(
        "checkpoint",
        help="a checkpoint-*.pt written by clmae train; with --format transformers also any weight (name, folder, "
        "hf-hub:org/repo)",
    )
    e.add_argument(
        "out", help="the weights folder to write (an earlier export of the same format there is replaced whole)"
    )
    e.add_argument(
        "--format",
        choices=("clmae", "transformers"),
        default="clmae",
        help="clmae (timm config.json + safetensors, default) or transformers (a ViTMAE folder with "
        "preprocessor_config.json that ViTMAEModel.from_pretrained and AutoImageProcessor load; docs/transformers.md)",
    )
    e.add_argument(
        "--decoder",
        action="store_true",
        help="--format transformers: write the decoder too (ViTMAEForPreTraining); default: the encoder (ViTMAEModel)",
    )
    e.add_argument(
        "--in-chans",
        type=int,
        choices=(1, 3),
        help="--format transformers: input channels of the exported encoder; 3 makes a greyscale weight take RGB "
        "images, as transformers' pipeline('image-feature-extraction') gives them (stem adapted as timm does)",
    )
    e.add_argument(
        "--overwrite",
        action="store_true",
        help="replace OUT as a whole even if it holds other files (a user's, or the other format's export)",
    )
    e.set_defaults(func=_export)

    v = subparsers.add_parser(
        "visualize",
        help="draw a checkpoint's masks, reconstructions and loss history",
        description="Draw the masks and reconstructions of a checkpoint written by clmae train on a few images, and "
        "the run's loss history; prints the paths of the pictures.",
    )
    v.add_argument("checkpoint", help="a checkpoint-*.pt written by clmae train")
    v.add_argument("--data", help="data spec for the images (default: the run's)")
    v.add_argument("--out", help="output folder (default: the checkpoint's)")
    v.add_argument("--num-images", type=int, default=8, help="images in the grid (default: 8)")
    v.add_argument("--overwrite", action="store_true", help="replace PNG files of the same names not drawn by clmae")
    v.set_defaults(func=_visualize)
