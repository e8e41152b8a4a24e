"""``clmae eval knn|linear|finetune`` and ``clmae extract``: the command line of evaluation and inference."""

from __future__ import annotations

import argparse
import json
import sys

from .._io import USER_ERRORS, error_line
from .._overrides import parse_pairs
from .run import PROTOCOLS, run_eval, summary

_HELP = {
    "knn": "kNN on frozen features: CL-MAE's (k=5, Euclidean, majority vote) and weighted cosine (k=20, T=0.07)",
    "linear": "linear probe as MAE (BatchNorm + linear, LARS, warm-up + cosine); mode=cached for the fast variant",
    "finetune": "fine-tuning as MAE (layer decay, drop-path, label smoothing, RandAugment, mixup/cutmix)",
}
_EPILOG = """options (key=value): seed, device, extract_batch_size, workers, train_limit, val_limit, cache,
cache_dir, arch, init_seed, revision, the protocol's hyper-parameters (clmae.eval.KnnConfig, LinearProbeConfig,
FinetuneConfig) and model_kwargs.KEY=VALUE (or model.KEY=VALUE) encoder arguments. Examples:
  clmae eval knn --model raw-pixels --data fmnist --out results/knn_raw.json
  clmae eval linear --model vit_t_fmnist --data fmnist mode=cached --out results/linear.json
  clmae eval finetune --model ckpt.pt --data imagefolder:/data/flowers epochs=20 --out results/ft.json"""


def _handler(args: argparse.Namespace) -> int:
    try:
        options = parse_pairs(args.overrides)
        result = run_eval(args.protocol, args.model, args.data, options, args.out, overwrite=args.overwrite)
    except USER_ERRORS as e:
        print(f"clmae eval {args.protocol}: error: {error_line(e)}", file=sys.stderr)
        return 2
    print(summary(result))
    if args.out is None:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(f"wrote {args.out}")
    return 0


def _extract(args: argparse.Namespace) -> int:
    from .._overrides import coerce
    from .extract import extract_folder

    skip = args.skip_unreadable
    for key, value in parse_pairs(args.overrides).items():
        if key != "skip_unreadable":
            raise ValueError(f"unknown option {key}={value}; clmae extract takes skip_unreadable=true|false")
        skip = coerce(value, bool, key)

    out = extract_folder(
        args.model,
        args.images,
        args.out,
        features=tuple(args.features.split(",")),
        batch_size=args.batch_size,
        device=args.device,
        num_workers=args.num_workers,
        progress=not args.quiet,
        skip_unreadable=skip,
        overwrite=args.overwrite,
        revision=args.revision,
    )
    print(f"wrote {out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``eval`` (sub-commands ``knn``, ``linear``, ``finetune``) and ``extract`` to the ``clmae`` sub-commands."""
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
        p.add_argument(
            "--overwrite", action="store_true", help="replace --out even if it is not an earlier clmae eval result"
        )
        p.add_argument("overrides", nargs="*", metavar="key=value", help="options and hyper-parameters")
        p.set_defaults(func=_handler)

    p = subparsers.add_parser("extract", help="encode a folder of images with a pretrained encoder")
    p.add_argument("model", help="registry name/alias, hf-hub:org/repo[@rev], local-dir:/path or a weights folder")
    p.add_argument("images", help="folder of images (searched recursively)")
    p.add_argument("out", help="output .safetensors file (tensors per feature, file names in its metadata)")
    p.add_argument("--features", default="pooled", help="comma list of pooled,cls,avg,patch (default: pooled)")
    p.add_argument("--batch-size", type=int, default=64, help="images per batch (default: 64)")
    p.add_argument("--device", default="auto", help="auto (default: CUDA if available), cpu, cuda, cuda:1 ...")
    p.add_argument("--num-workers", type=int, default=0, help="image decoding processes (default: 0)")
    p.add_argument("--revision", help="Hub revision (default: the registry's pinned commit)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--overwrite", action="store_true", help="replace OUT even if it is not an earlier clmae extract file"
    )
    p.add_argument(
        "--skip-unreadable",
        action="store_true",
        help="leave out image files that cannot be decoded (their count is printed), as train's skip_unreadable=true",
    )
    p.add_argument("overrides", nargs="*", metavar="key=value", help="skip_unreadable=true (same as the flag)")
    p.set_defaults(func=_extract)
