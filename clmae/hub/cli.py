"""The ``convert``, ``push`` and ``pretrained`` subcommands of the ``clmae`` command line."""

from __future__ import annotations

import argparse


def _convert(args: argparse.Namespace) -> int:
    from .convert import convert_checkpoint

    meta = {k: v for k, v in {"license": args.license, "datasets": args.dataset}.items() if v}
    folder = convert_checkpoint(
        args.checkpoint,
        args.out,
        name=args.name,
        num_heads=args.num_heads,
        decoder_num_heads=args.decoder_num_heads,
        masker_num_heads=args.masker_num_heads,
        metadata=meta,
        overwrite=args.overwrite,
    )
    print(f"wrote {folder}: " + ", ".join(sorted(p.name for p in folder.iterdir())))
    return 0


def _push(args: argparse.Namespace) -> int:
    from .push import push_to_hub

    push_to_hub(args.folder, args.repo_id, revision=args.revision, private=args.private)
    return 0


def _pretrained(args: argparse.Namespace) -> int:
    from .registry import get_weight, list_pretrained

    rows = []
    for name in list_pretrained(args.pattern):
        e = get_weight(name)
        rows.append((name, ",".join(e.aliases), e.method, e.status, e.hub_repo or "-"))
    widths = [max((len(r[i]) for r in rows), default=0) for i in range(4)]
    for row in rows:
        print(" ".join(f"{cell:{w}s}" for cell, w in zip(row, widths)) + f" {row[4]}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``convert``, ``push`` and ``pretrained`` to the ``clmae`` command's subparsers."""
    p = subparsers.add_parser(
        "convert",
        help="reference CL-MAE/MAE checkpoint (.pth) or transformers ViTMAE folder -> Hub-ready weights folder",
        description="Convert a checkpoint of the reference CL-MAE/MAE code (.pth) or a transformers ViTMAE folder into "
        "a Hub-ready weights folder: config.json, model.safetensors (the encoder), pretraining.safetensors and a "
        "model card.",
    )
    p.add_argument(
        "checkpoint",
        help="reference training checkpoint {model, optimizer, epoch, scaler, args}, or a transformers ViTMAE folder "
        "or hf-hub:org/repo (its architecture comes from its config.json)",
    )
    p.add_argument("out", help="output folder (config.json, model.safetensors, pretraining.safetensors, README.md)")
    p.add_argument("--name", help="clmae architecture (default: the one matching the weights' shapes)")
    p.add_argument("--num-heads", type=int, help="encoder heads, if not the architecture's (not stored in weights)")
    p.add_argument("--decoder-num-heads", type=int, help="decoder heads (default: the architecture's)")
    p.add_argument("--masker-num-heads", type=int, default=4, help="masking-module heads (default: 4)")
    p.add_argument("--license", help="licence of the weights for the model card (default: apache-2.0)")
    p.add_argument("--dataset", action="append", help="pretraining dataset for the model card (repeatable)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace OUT as a whole even if it holds files other than a clmae weights folder's",
    )
    p.set_defaults(func=_convert)

    p = subparsers.add_parser(
        "push",
        help="upload a weights folder to the Hugging Face Hub, print its registry entry",
        description="Upload a weights folder to a Hugging Face Hub repository (created if missing) and print the "
        "entry, with its pinned revision and checksums, to add to clmae's registry of weights.",
    )
    p.add_argument("folder", help="a folder written by clmae.save_pretrained or clmae convert")
    p.add_argument("repo_id", help="org/name on the Hub (created if missing)")
    p.add_argument("--revision", help="branch to commit to (default: main)")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.set_defaults(func=_push)

    p = subparsers.add_parser(
        "pretrained",
        help="list the registry's pretrained weights and their status",
        description="List the published weights of clmae's registry: name, aliases, method, status and Hub "
        "repository. Load one with clmae.create_model(NAME, pretrained=True) or --model NAME.",
    )
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. '*.mae*'")
    p.set_defaults(func=_pretrained)
