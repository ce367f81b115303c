"""The recipe schema: the keys allowed at each place of a recipe and the check of each value."""

from __future__ import annotations

from typing import Callable

from deepshrink.data import DATASET_NAMES
from deepshrink.models import model_names
from deepshrink.pipeline.export import FORMATS
from deepshrink.pipeline.recipe.values import (boolean, choice, integer, integers, mapping, number, numbers, ratios,
                                               text, texts)
from deepshrink.prune.criteria import CRITERIA, SCOPES
from deepshrink.prune.schedules import SCHEDULES as PRUNE_SCHEDULES
from deepshrink.prune.structured.importance import CRITERIA as STRUCTURED_CRITERIA
from deepshrink.quant import ACTIVATION_OBSERVERS, INITS, METHODS
from deepshrink.quant.mixed import CRITERIA as MIXED_CRITERIA
from deepshrink.train.config import PRECISIONS
from deepshrink.train.optim import OPTIMIZERS
from deepshrink.train.schedule import SCHEDULES as LR_SCHEDULES

STAGE_KINDS = ("train", "prune", "structured", "quantize", "encode", "export")
COMPRESSING = ("prune", "structured", "quantize")
TEACHERS = ("original", "previous")
FLOAT_DTYPES = ("float32", "float16")

# recipe key -> (TrainConfig field, check)
TRAIN_KEYS: dict[str, tuple[str, Callable]] = {
    "epochs": ("epochs", integer(0)),
    "batch_size": ("batch_size", integer(1)),
    "eval_batch_size": ("eval_batch_size", integer(1)),
    "optimizer": ("optimizer", choice(OPTIMIZERS)),
    "lr": ("lr", number(0, low_open=True)),
    "momentum": ("momentum", number(0, 1, high_open=True)),
    "nesterov": ("nesterov", boolean),
    "weight_decay": ("weight_decay", number(0)),
    "lr_schedule": ("schedule", choice(LR_SCHEDULES)),
    "warmup_epochs": ("warmup_epochs", number(0)),
    "milestones": ("milestones", numbers),
    "gamma": ("gamma", number(0, low_open=True)),
    "label_smoothing": ("label_smoothing", number(0, 1, high_open=True)),
    "augment": ("augment", boolean),
    "seed": ("seed", integer(0)),
    "eval_every": ("eval_every", integer(1)),
    "precision": ("precision", choice(PRECISIONS)),
}
DISTILL_KEYS = {"teacher": choice(TEACHERS), "temperature": number(0, low_open=True), "alpha": number(0, 1)}
STAGE_KEYS: dict[str, dict[str, Callable]] = {
    "train": {"distill": mapping},
    # ranges are the stage configs' own checks (PruneConfig, StructuredConfig, QuantConfig): types only here
    "prune": {"distill": mapping, "amount": number(), "criterion": choice(CRITERIA), "scope": choice(SCOPES),
              "schedule": choice(PRUNE_SCHEDULES), "prune_epochs": integer(), "exclude": texts,
              "exclude_first_last": boolean, "max_layer_sparsity": number()},
    "structured": {"distill": mapping, "criterion": choice(STRUCTURED_CRITERIA), "ratio": number(),
                   "target_macs_reduction": number(), "global_ranking": boolean,
                   "round_to": integer(), "li_resnet_rule": boolean, "layer_ratios": ratios,
                   "schedule": choice(PRUNE_SCHEDULES), "prune_epochs": integer()},
    "quantize": {"distill": mapping, "method": choice(METHODS), "bits": integer(), "symmetric": boolean,
                 "per_channel": boolean, "init": choice(INITS), "exclude": texts,
                 "exclude_first_last": boolean, "activation_bits": integer(),
                 "activation_observer": choice(ACTIVATION_OBSERVERS), "calibration_images": integer(1),
                 "mixed_budget_kb": number(0, low_open=True), "mixed_criterion": choice(MIXED_CRITERIA),
                 "mixed_bits": integers},
    "encode": {"float_dtype": choice(FLOAT_DTYPES), "bn_affine": boolean},
    "export": {"format": choice(FORMATS)},
}
# quantize keys that are not QuantConfig fields: they go to the quantize job itself
QUANTIZE_JOB_KEYS = ("calibration_images", "mixed_budget_kb", "mixed_criterion", "mixed_bits")
# a quantize stage needs bits or mixed_budget_kb (checked in validate.Validator.ranges)
STAGE_REQUIRED = {"train": ("epochs",), "prune": ("amount",), "export": ("format",)}
TOP_KEYS = {"name": text, "out": text, "data": mapping, "model": mapping, "stages": None,
            "device": text, "threads": integer(1)}
DATA_KEYS = {"name": choice(DATASET_NAMES), "dir": text, "limit_train": integer(1), "limit_test": integer(1),
             # your own images (FolderSource fields; ranges are its own checks)
             "folder": text, "image_size": integer(), "cache_dir": text, "skip_bad_images": boolean,
             "test_fraction": number(), "split_seed": integer()}
FOLDER_KEYS = ("image_size", "cache_dir", "skip_bad_images", "test_fraction", "split_seed")
MODEL_KEYS = {"zoo": choice(model_names()), "options": mapping, "pretrained": choice(model_names()),
              "checkpoint": text, "file": text, "builder": text, "kwargs": mapping}
MODEL_SOURCES = ("zoo", "builder", "pretrained", "file")
