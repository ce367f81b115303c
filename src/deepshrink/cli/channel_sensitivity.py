"""``deepshrink channel-sensitivity``: Li et al.'s filter-selection experiment on a model file.
Each channel group (by default the first conv of each residual block) alone loses a fraction
of its filters, chosen by the smallest L1 norms, at random (several seeds) or by the largest L1
norms; the test accuracy without retraining is printed, plotted per stage (--plot) or written
as JSON."""

from __future__ import annotations

import argparse

from deepshrink.cli.args import add_builder_args, add_data_args, any_int, any_number, positive_int, print_json, set_threads
from deepshrink.errors import UserError
from deepshrink.pipeline.channel_sensitivity import channel_sensitivity_job, plot_channel_sensitivity
from deepshrink.pipeline.datasets import load_split
from deepshrink.prune.structured.importance import CRITERIA

RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def register(sub) -> None:
    p = sub.add_parser("channel-sensitivity", help="accuracy as each layer alone loses filters, by criterion",
                       description=__doc__)
    p.add_argument("model_file", metavar="MODEL_FILE")
    add_data_args(p)
    p.add_argument("--criteria", nargs="+", choices=CRITERIA, default=["l1", "random", "l1-largest"],
                   help="how the filters are chosen (default: l1 random l1-largest)")
    p.add_argument("--ratios", nargs="+", type=any_number, default=list(RATIOS), metavar="R",
                   help="fractions of a group's filters to remove (default: 0.1 ... 0.9)")
    p.add_argument("--seeds", nargs="+", type=any_int, default=[0, 1, 2], metavar="S",
                   help="seeds of the random criterion (default: 0 1 2)")
    p.add_argument("--limit-test", type=positive_int, metavar="N", help="use only the first N test images")
    p.add_argument("--batch-size", type=positive_int, default=500, help="evaluation batch size (default: 500)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, ... (default: auto)")
    p.add_argument("--threads", type=positive_int, help="CPU threads for torch")
    p.add_argument("--plot", metavar="PNG", help="write the per-stage plot (Li et al. 2017, Figure 2)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    add_builder_args(p)
    p.set_defaults(run=run, config_flags={"layer_ratios": "--ratios", "seed": "--seeds"})


def run(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    if len(set(args.ratios)) != len(args.ratios) or sorted(args.ratios) != list(args.ratios):
        raise UserError("--ratios must be increasing, without repeats")
    test_set = load_split(args.data, "test", args.data_dir, args.limit_test)
    result = channel_sensitivity_job(args.model_file, test_set, criteria=args.criteria, ratios=args.ratios,
                                     seeds=args.seeds, device=args.device, batch_size=args.batch_size)
    if args.plot:
        plot_channel_sensitivity(result, args.plot, title=f"{args.model_file}: {len(test_set)} test images, no retraining")
    if args.json:
        print_json({"baseline": result.baseline, "ratios": list(result.ratios), "rows": result.rows()})
        return 0
    print(f"unpruned: {100 * result.baseline:.2f}%   columns: fraction of the group's filters removed")
    print(f"{'criterion':<16} {'group':<16} " + " ".join(f"{r:>6g}" for r in result.ratios))
    for row in result.rows():
        values = " ".join(f"{100 * row[f'{r:g}']:6.2f}" for r in result.ratios)
        name = f"random seed {args.seeds[row['seed']]}" if row["criterion"] == "random" else row["criterion"]
        print(f"{name:<16} {row['group']:<16} {values}")
    if args.plot:
        print(f"plot written to {args.plot}")
    return 0
