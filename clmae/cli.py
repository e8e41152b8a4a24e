"""The ``clmae`` command line."""

from __future__ import annotations

import argparse
import sys


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(args.out, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    return 0


def _list(args: argparse.Namespace) -> int:
    from .models import get_arch, list_models

    for name in list_models(args.pattern):
        print(f"{name:24s} {get_arch(name).description}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``clmae`` console script."""
    parser = argparse.ArgumentParser(prog="clmae", description="Curriculum-Learned Masked Autoencoders on timm ViTs.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="train CL-MAE briefly on the bundled Fashion-MNIST sample, draw its masks")
    demo.add_argument("--out", default="demo", help="output folder (default: demo)")
    demo.add_argument("--epochs", type=int, default=4, help="passes over the 1,000 sample images (default: 4)")
    demo.add_argument("--batch-size", type=int, default=100, help="images per iteration (default: 100)")
    demo.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (default: 1e-3)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    demo.set_defaults(func=_demo)

    lst = sub.add_parser("list", help="list the architectures")
    lst.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. '*patch4*'")
    lst.set_defaults(func=_list)

    from .train.cli import register as register_train

    register_train(sub)  # train, visualize

    from .hub.cli import register as register_hub

    register_hub(sub)  # convert, extract, push, pretrained

    from .eval.cli import register as register_eval

    register_eval(sub)  # eval knn|linear|finetune

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"clmae {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
