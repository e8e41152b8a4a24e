"""``clmae eval knn|linear|finetune``: the command line of the evaluation harness."""

from __future__ import annotations

import argparse
import json
import sys

from .run import PROTOCOLS, run_eval, summary

_HELP = {
    "knn": "kNN on frozen features: CL-MAE's (k=5, Euclidean, majority vote) and weighted cosine (k=20, T=0.07)",
    "linear": "linear probe as MAE (BatchNorm + linear, LARS, warm-up + cosine); mode=cached for the fast variant",
    "finetune": "fine-tuning as MAE (layer decay, drop-path, label smoothing, RandAugment, mixup/cutmix)",
}
_EPILOG = """options (key=value): seed, device, extract_batch_size, workers, train_limit, val_limit, cache,
cache_dir, arch, init_seed, revision, the protocol's hyper-parameters (clmae.eval.KnnConfig, LinearProbeConfig,
FinetuneConfig) and model.KEY=VALUE architecture overrides. Examples:
  clmae eval knn --model raw-pixels --data fmnist --out results/knn_raw.json
  clmae eval linear --model weights/vit_tiny_patch4_28 --data fmnist mode=cached --out results/linear.json
  clmae eval finetune --model ckpt.pt --data imagefolder:/data/flowers epochs=20 --out results/ft.json"""


def _parse_kv(items: list[str]) -> dict[str, str]:
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"options are key=value pairs, got {item!r} (e.g. epochs=10, train_limit=5000)")
        options[key.strip().replace("-", "_")] = value.strip()
    return options


def _handler(args: argparse.Namespace) -> int:
    try:
        options = _parse_kv(args.options)
        result = run_eval(args.protocol, args.model, args.data, options, args.out)
    except (ValueError, FileNotFoundError) as e:
        print(f"clmae eval {args.protocol}: error: {e}", file=sys.stderr)
        return 2
    print(summary(result))
    if args.out is None:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(f"wrote {args.out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``eval`` (with sub-commands ``knn``, ``linear``, ``finetune``) to the ``clmae`` sub-commands."""
    ev = subparsers.add_parser("eval", help="evaluate an encoder: kNN, linear probe or fine-tuning")
    protocols = ev.add_subparsers(dest="protocol", required=True, metavar="{knn,linear,finetune}")
    for name in PROTOCOLS:
        p = protocols.add_parser(
            name,
            help=_HELP[name],
            description=_HELP[name],
            epilog=_EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument(
            "--model",
            required=True,
            help="raw-pixels, an architecture (`clmae list`: random init), published weights (arch.tag, "
            "hf-hub:org/repo), a weights folder, a .safetensors file or a checkpoint",
        )
        p.add_argument("--data", required=True, help="fmnist, fmnist:/folder, fmnist-sample or imagefolder:/folder")
        p.add_argument("--out", default=None, help="result JSON file (default: print it)")
        p.add_argument("options", nargs="*", metavar="key=value", help="options and hyper-parameters")
        p.set_defaults(func=_handler)


def main(argv: list[str] | None = None) -> int:
    """Run ``eval`` on its own: ``python -m clmae.eval.cli knn --model ... --data ...``."""
    parser = argparse.ArgumentParser(prog="clmae")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["eval", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
