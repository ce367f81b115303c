"""``deepshrink prune``: prune a model file — individual weights (fine-grained masks), or with
``--structured`` whole channels (physically smaller layers) — optionally with fine-tuning."""

from __future__ import annotations

import argparse

from deepshrink.cli.args import add_builder_args, any_int, any_number, nonneg_int, print_json, set_threads
from deepshrink.cli.finetune import add_finetune_args, finetune_plan
from deepshrink.cli.summary import accuracy_note, before_after, before_after_table
from deepshrink.train.distributed import current
from deepshrink.errors import UserError
from deepshrink.pipeline.prune import prune_job
from deepshrink.prune.config import PruneConfig
from deepshrink.pipeline.structured_prune import StructuredPruneResult, structured_prune_job
from deepshrink.prune.criteria import CRITERIA, SCOPES
from deepshrink.prune.schedules import SCHEDULES
from deepshrink.prune.structured import CRITERIA as STRUCTURED_CRITERIA
from deepshrink.prune.structured import VECTOR_CHANNELS, StructuredConfig, unaligned_groups


def register(sub) -> None:
    p = sub.add_parser("prune", help="prune weights or whole channels of a model file", description=__doc__)
    p.add_argument("model_file", metavar="MODEL_FILE")
    p.add_argument("--structured", action="store_true",
                   help="remove whole channels: the layers physically shrink (criteria l1, l2, fpgm, bn-scale, random)")
    p.add_argument("--criterion", choices=sorted(set(CRITERIA) | set(STRUCTURED_CRITERIA)),
                   help="magnitude (default), std or random; with --structured: l1 (default), l2, fpgm, bn-scale, random")
    amount = p.add_mutually_exclusive_group(required=True)
    amount.add_argument("--sparsity", type=any_number, metavar="Q",
                        help="fraction of weights to prune, in [0, 1) (magnitude, random)")
    amount.add_argument("--std-factor", type=any_number, metavar="S",
                        help="prune |w| < S * std(w) (criterion std)")
    amount.add_argument("--ratio", type=any_number, metavar="R",
                        help="--structured: fraction of channels to remove from every prunable group")
    amount.add_argument("--target-macs-reduction", type=any_number, metavar="F",
                        help="--structured: remove channels until the MACs fall by at least this fraction "
                             "(past it by less than one channel step: one channel, or N with --round-to N, of one layer)")
    p.add_argument("--global", dest="global_ranking", action="store_true",
                   help="--structured: one ranking of channels over all layers")
    p.add_argument("--round-to", type=any_int, default=1, metavar="N",
                   help="--structured: keep a multiple of N channels per layer")
    p.add_argument("--li-resnet-rule", action="store_true",
                   help="--structured: prune only the first conv of each residual block (Li et al. 2017)")
    p.add_argument("--scope", choices=SCOPES, default="layer",
                   help="layer: the same sparsity in every layer; global: one threshold over all")
    p.add_argument("--max-layer-sparsity", type=any_number, metavar="C",
                   help="--scope global: no layer loses more than this fraction of its weights (default 1: no cap)")
    p.add_argument("--schedule", choices=SCHEDULES, default="oneshot",
                   help="oneshot: prune, then fine-tune; linear/agp: prune step by step while fine-tuning "
                        "(--structured: channels are zeroed on the way and removed at the end)")
    p.add_argument("--epochs", type=nonneg_int, default=0,
                   help="fine-tuning epochs (0: prune only, no data needed)")
    p.add_argument("--prune-epochs", type=any_int, metavar="E",
                   help="linear/agp: ramp up over the first E epochs (default: half of --epochs)")
    p.add_argument("--exclude", nargs="+", default=[], metavar="GLOB",
                   help="layer names (fnmatch globs) to leave dense, besides the first and last layer")
    p.add_argument("--prune-first-last", action="store_true",
                   help="prune the first convolution and the classifier too")
    p.add_argument("--out", required=True, metavar="MODEL_FILE", help="where to write the pruned model")
    add_finetune_args(p)
    p.add_argument("--json", action="store_true",
                   help="print the history record with the before/after measures as JSON")
    add_builder_args(p)
    p.set_defaults(run=run, config_flags=CONFIG_FLAGS)


# PruneConfig / StructuredConfig fields whose flag is not --field-name
CONFIG_FLAGS = {"exclude_first_last": "--prune-first-last", "global_ranking": "--global",
                "max_layer_sparsity": "--max-layer-sparsity"}


def _settings(args: argparse.Namespace) -> PruneConfig:
    if args.ratio is not None or args.target_macs_reduction is not None:
        raise UserError("--ratio and --target-macs-reduction need --structured")
    args.criterion = args.criterion or "magnitude"
    if args.criterion not in CRITERIA:
        raise UserError(f"criterion {args.criterion} is for --structured; fine-grained pruning takes: {', '.join(CRITERIA)}")
    if (args.criterion == "std") != (args.std_factor is not None):
        raise UserError("--criterion std takes --std-factor S; magnitude and random take --sparsity Q")
    return PruneConfig(sparsity=args.sparsity, criterion=args.criterion, scope=args.scope, std_factor=args.std_factor,
                       max_layer_sparsity=args.max_layer_sparsity, schedule=args.schedule,
                       prune_epochs=args.prune_epochs, exclude=tuple(args.exclude),
                       exclude_first_last=not args.prune_first_last, seed=args.seed)


def _structured_settings(args: argparse.Namespace) -> StructuredConfig:
    if args.sparsity is not None or args.std_factor is not None:
        raise UserError("--structured takes --ratio R or --target-macs-reduction F")
    criterion = args.criterion or "l1"
    if criterion not in STRUCTURED_CRITERIA:
        raise UserError(f"--structured takes --criterion {', '.join(STRUCTURED_CRITERIA)}; got {criterion}")
    return StructuredConfig(criterion, args.ratio, args.target_macs_reduction, args.global_ranking,
                              args.round_to, args.li_resnet_rule, seed=args.seed, schedule=args.schedule,
                              prune_epochs=args.prune_epochs)


def run(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    settings = _structured_settings(args) if args.structured else _settings(args)
    config, train_set, test_set, hooks = finetune_plan(args, args.epochs, "--epochs")
    if args.structured:
        return _print_structured(args, structured_prune_job(
            args.model_file, args.out, settings, config, train_set=train_set, test_set=test_set,
            run_dir=args.run_dir, resume=args.resume, hooks=hooks))
    result = prune_job(args.model_file, args.out, settings, config, train_set=train_set, test_set=test_set,
                       run_dir=args.run_dir, resume=args.resume, hooks=hooks, measure_before=True)
    if not current().is_main:
        return 0
    if args.json:
        print_json({**result.record, **before_after(result.before, result.after)})
        return 0
    width = max(len(name) for name in result.layer_sparsity)
    for name, sparsity in result.layer_sparsity.items():
        print(f"{name:<{width}}  {100 * sparsity:6.2f}% pruned")
    _print_table(result.before, result.after, args.epochs)
    asked = f" (asked {100 * settings.sparsity:g}%)" if settings.sparsity is not None else ""
    print(f"pruned layers: {100 * result.sparsity:.2f}% sparse{asked}")
    print(f"model written to {args.out}")
    return 0


def _print_structured(args: argparse.Namespace, result: StructuredPruneResult) -> int:
    if not current().is_main:
        return 0
    record = result.record
    if args.json:
        print_json({**record, **before_after(result.before, result.after)})
        return 0
    for group, (before, after) in record["channels"].items():
        print(f"{group:<24} {before:4d} -> {after:4d} channels")
    asked = record.get("target_macs_reduction")
    target = f", asked {100 * asked:g}%" if asked is not None else ""
    print(f"MACs {record['macs_before']:,} -> {record['macs_after']:,} "
          f"({100 * record['macs_reduction']:.2f}% fewer{target}; "
          f"{record['macs_before'] / max(record['macs_after'], 1):.2f}x), "
          f"params {record['params_before']:,} -> {record['params_after']:,}")
    unaligned = unaligned_groups(record["channels"])
    if unaligned:
        print(f"note: {len(unaligned)} of {len(record['channels'])} groups now have a channel count that is not a "
              f"multiple of {VECTOR_CHANNELS}; CPU kernels lose most of their speed-up on them "
              f"(--round-to {VECTOR_CHANNELS} avoids it)")
    _print_table(result.before, result.after, args.epochs)
    print(f"model written to {args.out}")
    return 0


def _print_table(before, after, epochs: int) -> None:
    print(before_after_table(before, after))
    note = accuracy_note(before, after, epochs, "--epochs")
    if note:
        print(note)
