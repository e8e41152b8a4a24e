"""``clmae eval knn|linear|finetune`` and ``clmae extract``: the command line of evaluation and inference."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap

from ..data.spec import forms_help
from .protocols import PROTOCOLS

# The command line imports no torch: the handlers import what they run (``clmae --help`` stays fast).
_EXAMPLES = """Examples:
  clmae eval knn --model raw-pixels --data fmnist --out results/knn_raw.json
  clmae eval linear --model vit_t_fmnist --data fmnist mode=cached --out results/linear.json
  clmae eval finetune --model ckpt.pt --data imagefolder:/data/flowers epochs=20 --out results/ft.json"""


def _epilog(config_name: str) -> str:
    options = (
        "options (key=value): seed, device, extract_batch_size, workers, train_limit, val_limit, cache, cache_dir, "
        f"arch, init_seed, revision, the protocol's hyper-parameters ({config_name}) and model_kwargs.KEY=VALUE (or "
        "model.KEY=VALUE) encoder arguments."
    )
    return f"{textwrap.fill(options, 115)}\n{_EXAMPLES}"


def _handler(args: argparse.Namespace) -> int:
    from .._cli_errors import USER_ERRORS, error_line
    from .._overrides import parse_pairs
    from .run import run_eval, summary

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
    from .._overrides import coerce, parse_pairs
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
    """Add ``eval`` (one sub-command per protocol of :data:`~clmae.eval.protocols.PROTOCOLS`) and ``extract`` to the
    ``clmae`` sub-commands."""
    names = ", ".join(PROTOCOLS)
    ev = subparsers.add_parser(
        "eval",
        help=f"evaluate an encoder: {names}",
        description="Evaluate an encoder on labelled data. Protocols: "
        + "; ".join(f"{name}: {p.help}" for name, p in PROTOCOLS.items())
        + ". `clmae eval PROTOCOL --help` lists its options.",
    )
    protocols = ev.add_subparsers(dest="protocol", required=True, metavar="{" + ",".join(PROTOCOLS) + "}")
    for name, protocol in PROTOCOLS.items():
        p = protocols.add_parser(
            name,
            help=protocol.help,
            description=protocol.help,
            epilog=_epilog(protocol.config_path),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument(
            "--model",
            required=True,
            help="raw-pixels, an architecture (`clmae list`: random init), published weights (arch.tag, "
            "hf-hub:org/repo), a weights folder, a .safetensors file or a checkpoint",
        )
        p.add_argument("--data", required=True, help=f"labelled data: {forms_help(labelled=True)}; see docs/data.md")
        p.add_argument("--out", default=None, help="result JSON file (default: print it)")
        p.add_argument(
            "--overwrite", action="store_true", help="replace --out even if it is not an earlier clmae eval result"
        )
        p.add_argument("overrides", nargs="*", metavar="key=value", help="options and hyper-parameters")
        p.set_defaults(func=_handler)

    p = subparsers.add_parser(
        "extract",
        help="encode a folder of images with a pretrained encoder",
        description="Encode every image of a folder (recursively) with a pretrained encoder and write the features "
        "to one .safetensors file, with the images' file names in its metadata.",
    )
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
