"""``deepshrink train``: train a zoo model, or a model from any builder PKG.MODULE:FUNCTION (or
continue a model file), on a dataset."""

from __future__ import annotations

import argparse
from pathlib import Path

from deepshrink.cli.args import (add_builder_args, add_data_args, add_distill_args, any_int, any_number, distill_hooks,
                                 key_value, model_choice, nonneg_float, nonneg_int, positive_int, set_threads)
from deepshrink.errors import UserError
from deepshrink.models import model_names
from deepshrink.models.early_exit import EARLY_EXIT_ARCH
from deepshrink.pipeline.datasets import load_split
from deepshrink.pipeline.train import train_job
from deepshrink.train import TrainConfig
from deepshrink.train.config import PRECISIONS
from deepshrink.train.optim import OPTIMIZERS
from deepshrink.train.schedule import SCHEDULES
from deepshrink.train.trainer import CHECKPOINT, METRICS


def register(sub) -> None:
    p = sub.add_parser("train", help="train a model", description=__doc__)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", type=model_choice, metavar="MODEL",
                        help=f"model to train from scratch: a zoo model ({', '.join(model_names())}) or any "
                             "builder PKG.MODULE:FUNCTION returning a torch.nn.Module (its options from --model-opt)")
    source.add_argument("--init", metavar="MODEL_FILE", help="model file to continue training")
    p.add_argument("--model-opt", metavar="KEY=VALUE", type=key_value, action="append", default=[],
                   help="builder option, e.g. shortcut=B or width=32 (repeatable)")
    add_data_args(p)
    p.add_argument("--out", required=True, metavar="DIR", help="run folder (checkpoints, model, metrics)")
    p.add_argument("--epochs", type=any_int, default=TrainConfig.epochs, help="training epochs")
    p.add_argument("--batch-size", type=any_int, default=TrainConfig.batch_size,
                   help="batch size (global: split over the processes under torchrun)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=TrainConfig.optimizer, help="optimizer")
    p.add_argument("--lr", type=any_number, default=TrainConfig.lr, help="peak learning rate")
    p.add_argument("--momentum", type=any_number, default=TrainConfig.momentum, help="SGD momentum (--optimizer sgd)")
    p.add_argument("--nesterov", action="store_true", help="Nesterov momentum (--optimizer sgd)")
    p.add_argument("--weight-decay", type=any_number, default=TrainConfig.weight_decay, help="weight decay")
    p.add_argument("--schedule", choices=SCHEDULES, default=TrainConfig.schedule, help="learning-rate schedule")
    p.add_argument("--warmup-epochs", type=any_number, default=0.0, help="linear learning-rate warm-up, in epochs")
    p.add_argument("--milestones", type=any_number, nargs="+", default=(), metavar="EPOCH",
                   help="epochs at which the step schedule multiplies the rate by --gamma")
    p.add_argument("--gamma", type=any_number, default=TrainConfig.gamma,
                   help="step schedule: factor at each milestone")
    p.add_argument("--label-smoothing", type=any_number, default=0.0, help="label smoothing of the loss")
    p.add_argument("--no-augment", action="store_true", help="turn off the dataset's augmentation")
    p.add_argument("--seed", type=nonneg_int, default=0, help="seed of the initialisation, batch order and augmentation")
    p.add_argument("--eval-every", type=any_int, default=1, metavar="EPOCHS",
                   help="evaluate on the test split every EPOCHS epochs")
    p.add_argument("--limit-train", type=positive_int, metavar="N", help="use only the first N training images")
    p.add_argument("--limit-test", type=positive_int, metavar="N", help="use only the first N test images")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    p.add_argument("--threads", type=positive_int, help="CPU threads for torch (default: torch's own choice)")
    p.add_argument("--precision", choices=PRECISIONS, default=TrainConfig.precision,
                   help="forward pass under autocast to float16 (with dynamic loss scaling) or "
                        "bfloat16; weights stay float32")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    p.add_argument("--early-exits", nargs="+", metavar="POINT",
                   help="add exit heads (pool + linear) after these backbone modules, in forward order "
                        "(e.g. layer1 layer2), trained jointly with the backbone")
    p.add_argument("--exit-weights", type=nonneg_float, nargs="+", metavar="W",
                   help="loss weight of each exit (default 1 each); the final classifier weighs 1")
    add_distill_args(p)
    add_builder_args(p, ("init", "teacher"))
    p.set_defaults(run=run, config_flags={"augment": "--no-augment"})


def _refuse_existing_run(out: str) -> None:
    """``--out`` already holding a run (a checkpoint or metrics) is refused without ``--resume``,
    as ``deepshrink run`` does: training afresh would silently overwrite it."""
    folder = Path(out)
    if any((folder / name).exists() for name in (CHECKPOINT, METRICS)):
        raise UserError(f"{out} already holds a run: give --resume to continue it, or another --out")


def run(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    if not args.resume:
        _refuse_existing_run(args.out)
    config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
        momentum=args.momentum, nesterov=args.nesterov, weight_decay=args.weight_decay,
        schedule=args.schedule, warmup_epochs=args.warmup_epochs, milestones=tuple(args.milestones),
        gamma=args.gamma, label_smoothing=args.label_smoothing, augment=not args.no_augment,
        seed=args.seed, eval_every=args.eval_every, device=args.device, precision=args.precision)
    train_set = load_split(args.data, "train", args.data_dir, args.limit_train)
    test_set = load_split(args.data, "test", args.data_dir, args.limit_test)
    trainer, result = train_job(train_set, test_set, config, model_name=args.model,
                                model_options=dict(args.model_opt), init_from=args.init,
                                out_dir=args.out, resume=args.resume, hooks=distill_hooks(args, train_set),
                                early_exits=args.early_exits, exit_weights=args.exit_weights)
    if not trainer.dist.is_main:
        return 0
    for record in result.history:
        top1 = record.get("test_top1")
        shown = f"{100 * top1:6.2f}%" if top1 is not None else "   -   "
        print(f"epoch {record['epoch']:4d}  loss {record['train_loss']:.4f}  "
              f"train {100 * record['train_top1']:6.2f}%  test {shown}  {record['seconds']:.1f}s")
    if result.final is not None:
        print(f"final test top-1 {100 * result.final.top1:.2f}% "
              f"(best {100 * result.best_top1:.2f}% at epoch {result.best_epoch})")
    print(f"model written to {args.out}/model.safetensors")
    if trainer.info.arch.name == EARLY_EXIT_ARCH:
        print(f"early exits at {', '.join(trainer.info.arch.kwargs['exit_points'])}: "
              "`deepshrink early-exit-sweep` measures accuracy against MACs per threshold")
    return 0

