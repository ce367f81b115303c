"""``deepshrink sparse-opt``: sparse least squares by plain, projected, L1, proximal and trimmed-L1
gradient descent on the classic five-weight problem (or your X, y); final W and L, and plots."""

from __future__ import annotations

import argparse

from deepshrink.cli.args import positive_float, positive_int, print_json
from deepshrink.sparse_opt import classic_problem, load_problem, run_suite
from deepshrink.sparse_opt.plots import plot_losses, plot_weights


def register(sub) -> None:
    p = sub.add_parser("sparse-opt", help="sparse optimization of a linear model", description=__doc__)
    p.add_argument("--data", metavar="FILE", help=".csv (features then y per row) or .npz (arrays X, y); "
                                                  "default: the classic 3-sample, 5-weight problem")
    p.add_argument("--steps", type=positive_int, default=200)
    p.add_argument("--lr", type=positive_float, default=0.02, metavar="η", help="step size")
    p.add_argument("--k", type=positive_int, default=2, help="non-zero weights kept by the projected "
                                                             "and trimmed-L1 methods")
    p.add_argument("--out", metavar="DIR", help="write loss.png (log L per step) and weights.png here")
    p.add_argument("--json", action="store_true", help="print {method/setting: {W, L}} as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    problem = load_problem(args.data) if args.data else classic_problem()
    runs = run_suite(problem, steps=args.steps, lr=args.lr, k=args.k)
    if args.out:
        plot_losses(runs, f"{args.out}/loss.png")
        plot_weights(runs, f"{args.out}/weights.png")
    if args.json:
        print_json({name: run.final for name, run in runs.items()})
        return 0
    width = max(map(len, runs))
    for name, run in runs.items():
        final = run.final
        weights = " ".join(f"{w:8.4f}" for w in final["W"])
        print(f"{name:<{width}}  W = [{weights}]  L = {final['L']:.6g}")
    if args.out:
        print(f"plots written to {args.out}/loss.png and {args.out}/weights.png")
    return 0
