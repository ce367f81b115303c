"""``deepshrink run``: run a recipe (train, prune, quantize, encode, export) into a run folder.

Runs under torchrun too (``torchrun --nproc-per-node 2 -m deepshrink run RECIPE``): every rank
runs the recipe, rank 0 writes the run folder and prints."""

from __future__ import annotations

import argparse

from deepshrink.cli.args import add_builder_args
from deepshrink.pipeline.recipe import load_recipe
from deepshrink.pipeline.run_report import format_stage_table
from deepshrink.pipeline.runner import run_recipe
from deepshrink.train.distributed import current


def register(sub) -> None:
    p = sub.add_parser("run", help="run a recipe of stages and write its report", description=__doc__)
    p.add_argument("recipe", metavar="RECIPE.yaml")
    p.add_argument("--out", metavar="DIR", help="run folder (default: the recipe's 'out', relative to here; "
                                                     "with --out the recipe may leave 'out' out)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run: skip finished stages, resume training from checkpoints")
    add_builder_args(p, ())
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    recipe = load_recipe(args.recipe, out_given=args.out is not None)
    result = run_recipe(recipe, out=args.out, resume=args.resume, allow_builders=args.allow_builder,
                        on_stage=lambda record, skipped: print(
                            f"{record.folder}: {'already finished' if skipped else 'done'}, "
                            f"top-1 {100 * record.top1:.2f}%, {record.bytes:,} bytes ({record.seconds:.1f} s)",
                            flush=True))
    if not current().is_main:  # under torchrun only rank 0 prints
        return 0
    print(format_stage_table(result.stages))
    print(f"report written to {result.report}")
    return 0
