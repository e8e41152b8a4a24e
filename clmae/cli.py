"""The ``clmae`` command line.

Building the parser imports no torch: each command's handler imports what it runs (torch, timm), so that ``clmae
--help``, ``clmae --version`` and an argument error answer at once.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from ._version import __version__
from .eval.cli import register as register_eval
from .hub.cli import register as register_hub
from .train.cli import register as register_train


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo, run_train_demo

    if args.train:
        run_train_demo(args.out, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    else:
        from .data.spec import parse_data_spec

        baseline = None if args.baseline.lower() == "none" else args.baseline
        data = parse_data_spec(args.data)
        if data.kind == "synthetic" or data.spec.startswith("imagefolder:"):
            raise ValueError(f"the demo reads Fashion-MNIST (fmnist, fmnist-sample, fmnist:FOLDER), not {data.spec}")
        run_demo(args.out, weights=args.weights, baseline=baseline, data_root=data.root)  # a bare IDX folder works too
    return 0


def _list(args: argparse.Namespace) -> int:
    from .models import get_arch, list_models

    for name in list_models(args.pattern):
        print(f"{name:24s} {get_arch(name).description}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``clmae`` command's parser, every subcommand included (each sets ``func``, its handler)."""
    parser = argparse.ArgumentParser(prog="clmae", description="Curriculum-Learned Masked Autoencoders on timm ViTs.")
    parser.add_argument("--version", action="version", version=f"clmae {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo",
        help="kNN accuracy and learned masks of the bundled CL-MAE weights on Fashion-MNIST (--train: train briefly)",
        description="Show the bundled CL-MAE weights at work: kNN accuracy against the MAE baseline on Fashion-MNIST "
        "and a picture of the masks they learned, written to --out. With --train, train CL-MAE briefly on the "
        "bundled images instead and draw its masks.",
    )
    demo.add_argument("--out", default="demo", help="output folder (default: demo)")
    demo.add_argument("--weights", default="vit_t_fmnist", help="CL-MAE weights to show (default: vit_t_fmnist)")
    demo.add_argument("--baseline", default="mae_vit_t_fmnist", help="weights to compare with, or none")
    demo.add_argument(
        "--data",
        default="fmnist-sample",
        help="fmnist-sample (the bundled 1,000 + 1,000 images, default), fmnist (Debian's full set) or fmnist:FOLDER "
        "(IDX files)",
    )
    demo.add_argument("--train", action="store_true", help="instead, train CL-MAE briefly and draw its masks")
    demo.add_argument("--epochs", type=int, default=4, help="--train: passes over the 1,000 images (default: 4)")
    demo.add_argument("--batch-size", type=int, default=100, help="--train: images per iteration (default: 100)")
    demo.add_argument("--lr", type=float, default=1e-3, help="--train: AdamW learning rate (default: 1e-3)")
    demo.add_argument("--seed", type=int, default=0, help="--train: random seed (default: 0)")
    demo.set_defaults(func=_demo)

    lst = sub.add_parser(
        "list",
        help="list the architectures",
        description="List the encoder architectures clmae builds (names for create_model, --model and model=), with "
        "a line on each; published weights are listed by `clmae pretrained`.",
    )
    lst.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. '*patch4*'")
    lst.set_defaults(func=_list)

    register_train(sub)  # train, export, visualize
    register_hub(sub)  # convert, push, pretrained
    register_eval(sub)  # eval and one subcommand per protocol, extract
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``clmae`` console script."""
    parser = build_parser()
    # key=value overrides may stand anywhere among the options (``--recipe R epochs=1 --data D``): argparse takes the
    # first run of them as the positional list, and the rest come back here.
    args, extra = parser.parse_known_args(argv)
    if extra:
        if hasattr(args, "overrides") and all("=" in item and not item.startswith("-") for item in extra):
            args.overrides = [*args.overrides, *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    from ._cli_errors import USER_ERRORS, error_line
    from .train.signals import Terminated

    def terminate(signum: int, frame: object) -> None:  # the trainer notes SIGTERM its own way while a run lives
        raise Terminated("stopped by SIGTERM")

    command = args.command if args.command != "eval" else f"eval {args.protocol}"
    main_thread = threading.current_thread() is threading.main_thread()
    speaks = os.environ.get("RANK", "0") == "0"  # under torchrun every process stops; rank 0 says where
    saved = signal.signal(signal.SIGTERM, terminate) if main_thread else None
    try:
        return args.func(args)
    except USER_ERRORS as e:
        print(f"clmae {command}: error: {error_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # Ctrl-C: one line (the trainer's says where it stopped), no traceback
        if speaks:
            print(f"clmae {command}: interrupted: {error_line(e) if str(e) else 'stopped by Ctrl-C'}", file=sys.stderr)
        return 130
    except Terminated as e:
        if speaks:
            print(f"clmae {command}: terminated: {error_line(e)}", file=sys.stderr)
        return Terminated.exit_code
    finally:
        if saved is not None:
            signal.signal(signal.SIGTERM, saved)


if __name__ == "__main__":
    sys.exit(main())
