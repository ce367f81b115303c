"""Recipes: one YAML file naming a dataset, a starting model and the stages to run on it.

The whole recipe is validated before anything runs; every mistake is a :class:`UserError`
naming the file, the line and the key path, e.g.
``recipe.yaml line 14: stages[2].quantize.bits: must be one of 2..8, got 9``.

::

    name: lenet5-digits
    out: runs/lenet5            # relative to the current directory (``deepshrink run --out`` overrides)
    data: {name: digits}        # name, dir, limit_train, limit_test
    model: {zoo: lenet5}        # or {zoo: NAME, options: {...}}, {pretrained: resnet20, checkpoint: PATH}, {file: PATH}
    device: auto                # optional; also threads: N
    stages:
      - train: {epochs: 20, lr: 0.05}
      - prune: {amount: 0.8, schedule: linear, epochs: 6, lr: 0.01}
      - train: {epochs: 2, lr: 0.005, distill: {teacher: original, temperature: 4, alpha: 0.9}}
      - quantize: {method: kmeans, bits: 4, epochs: 2, lr: 0.001}
      - encode: {float_dtype: float32}
      - export: {format: onnx}

Stage keys: every training stage (``train``, ``prune``, ``structured``, ``quantize``) takes the
training settings of :data:`TRAIN_KEYS` (``epochs`` is required for ``train`` and defaults to 0,
no fine-tuning, elsewhere; ``lr_schedule`` is the learning-rate schedule, ``schedule`` in a
``prune`` stage the pruning schedule). ``distill`` (training stages with epochs > 0) distils from the model
before the stage (``teacher: previous``) or from the model before the first compressing stage
(``teacher: original``, the default). A ``quantize`` stage takes ``bits`` or, for per-layer bits
under a size budget, ``mixed_budget_kb`` (with ``mixed_criterion`` and ``mixed_bits``, as
``deepshrink quantize --mixed-budget-kb``), and ``calibration_images`` for activation ranges
and mixed-precision sensitivity. Paths inside the recipe (``data.dir``,
``model.checkpoint``, ``model.file``) are relative to the recipe file's folder.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from deepshrink.data import DATASET_NAMES
from deepshrink.errors import UserError
from deepshrink.models import model_names
from deepshrink.pipeline.export import FORMATS
from deepshrink.pipeline.prune import PruneSettings
from deepshrink.pipeline.quantize import MixedPrecision
from deepshrink.prune.criteria import CRITERIA, SCOPES
from deepshrink.prune.schedules import SCHEDULES as PRUNE_SCHEDULES
from deepshrink.prune.structured import StructuredSettings
from deepshrink.prune.structured.importance import CRITERIA as STRUCTURED_CRITERIA
from deepshrink.quant import ACTIVATION_OBSERVERS, BITS, INITS, METHODS, QuantConfig
from deepshrink.quant.api import KMEANS_BITS
from deepshrink.quant.mixed import CRITERIA as MIXED_CRITERIA
from deepshrink.quant.mixed import DEFAULT_BITS as MIXED_DEFAULT_BITS
from deepshrink.train import TrainConfig
from deepshrink.train.config import PRECISIONS
from deepshrink.train.optim import OPTIMIZERS
from deepshrink.train.schedule import SCHEDULES as LR_SCHEDULES

STAGE_KINDS = ("train", "prune", "structured", "quantize", "encode", "export")
COMPRESSING = ("prune", "structured", "quantize")
TEACHERS = ("original", "previous")
FLOAT_DTYPES = ("float32", "float16")


class _Bad(Exception):
    """A value that fails its check; the message says why (the caller adds where)."""


# --- value checks: each returns the (converted) value or raises _Bad ---------------------------

def _integer(low: int | None = None, high: int | None = None) -> Callable[[Any], int]:
    def check(value):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Bad(f"must be an integer, got {value!r}")
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f">= {low}" if high is None else f"in {low}..{high}"
            raise _Bad(f"must be an integer {bounds}, got {value}")
        return value
    return check


def _number(low: float | None = None, high: float | None = None, *, low_open: bool = False,
            high_open: bool = False) -> Callable[[Any], float]:
    def check(value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Bad(f"must be a number, got {value!r}")
        below = low is not None and (value < low or (low_open and value == low))
        above = high is not None and (value > high or (high_open and value == high))
        if below or above or value != value:
            if high is None:
                bounds = f"{'>' if low_open else '>='} {low}"
            else:
                bounds = f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
            raise _Bad(f"must be a number {bounds}, got {value}")
        return float(value)
    return check


def _choice(options, shown: str | None = None) -> Callable[[Any], Any]:
    def check(value):
        if value not in options or isinstance(value, bool):
            hint = _did_you_mean(value, options)
            raise _Bad(f"must be one of {shown or ', '.join(map(str, options))}, got {value!r}{hint}")
        return value
    return check


def _boolean(value):
    if not isinstance(value, bool):
        raise _Bad(f"must be true or false, got {value!r}")
    return value


def _text(value):
    if not isinstance(value, str) or not value:
        raise _Bad(f"must be a non-empty string, got {value!r}")
    return value


def _texts(value):
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _Bad(f"must be a list of strings, got {value!r}")
    return tuple(value)


def _numbers(value):
    if not isinstance(value, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                              for v in value):
        raise _Bad(f"must be a list of numbers, got {value!r}")
    return tuple(float(v) for v in value)


def _integers(value):
    if (not isinstance(value, list) or not value
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        raise _Bad(f"must be a non-empty list of integers, got {value!r}")
    return tuple(value)


def _ratios(value):
    if not isinstance(value, dict):
        raise _Bad(f"must be a mapping of layer glob -> ratio, got {value!r}")
    return {str(k): _number(0, 1, high_open=True)(v) for k, v in value.items()}


def _options(value):
    if not isinstance(value, dict):
        raise _Bad(f"must be a mapping, got {value!r}")
    return dict(value)


def _did_you_mean(value, options) -> str:
    close = difflib.get_close_matches(str(value), [str(o) for o in options], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# --- the schema ---------------------------------------------------------------------------------

# recipe key -> (TrainConfig field, check)
TRAIN_KEYS: dict[str, tuple[str, Callable]] = {
    "epochs": ("epochs", _integer(0)),
    "batch_size": ("batch_size", _integer(1)),
    "eval_batch_size": ("eval_batch_size", _integer(1)),
    "optimizer": ("optimizer", _choice(OPTIMIZERS)),
    "lr": ("lr", _number(0, low_open=True)),
    "momentum": ("momentum", _number(0, 1, high_open=True)),
    "nesterov": ("nesterov", _boolean),
    "weight_decay": ("weight_decay", _number(0)),
    "lr_schedule": ("schedule", _choice(LR_SCHEDULES)),
    "warmup_epochs": ("warmup_epochs", _number(0)),
    "milestones": ("milestones", _numbers),
    "gamma": ("gamma", _number(0, low_open=True)),
    "label_smoothing": ("label_smoothing", _number(0, 1, high_open=True)),
    "augment": ("augment", _boolean),
    "seed": ("seed", _integer(0)),
    "eval_every": ("eval_every", _integer(1)),
    "precision": ("precision", _choice(PRECISIONS)),
}
DISTILL_KEYS = {"teacher": _choice(TEACHERS), "temperature": _number(0, low_open=True), "alpha": _number(0, 1)}
STAGE_KEYS: dict[str, dict[str, Callable]] = {
    "train": {"distill": _options},
    "prune": {"distill": _options, "amount": _number(0), "criterion": _choice(CRITERIA), "scope": _choice(SCOPES),
              "schedule": _choice(PRUNE_SCHEDULES), "prune_epochs": _integer(1), "exclude": _texts,
              "exclude_first_last": _boolean, "max_layer_sparsity": _number(0, 1, low_open=True)},
    "structured": {"distill": _options, "criterion": _choice(STRUCTURED_CRITERIA), "ratio": _number(0, 1, high_open=True),
                   "target_macs_reduction": _number(0, 1, high_open=True), "global_ranking": _boolean,
                   "round_to": _integer(1), "li_resnet_rule": _boolean, "layer_ratios": _ratios},
    "quantize": {"distill": _options, "method": _choice(METHODS), "bits": _integer(), "symmetric": _boolean,
                 "per_channel": _boolean, "init": _choice(INITS), "exclude": _texts,
                 "exclude_first_last": _boolean, "activation_bits": _integer(2),
                 "activation_observer": _choice(ACTIVATION_OBSERVERS), "calibration_images": _integer(1),
                 "mixed_budget_kb": _number(0, low_open=True), "mixed_criterion": _choice(MIXED_CRITERIA),
                 "mixed_bits": _integers},
    "encode": {"float_dtype": _choice(FLOAT_DTYPES)},
    "export": {"format": _choice(FORMATS)},
}
# quantize keys that are not QuantConfig fields: they go to the quantize job itself
QUANTIZE_JOB_KEYS = ("calibration_images", "mixed_budget_kb", "mixed_criterion", "mixed_bits")
# a quantize stage needs bits or mixed_budget_kb (checked in _Validator.ranges)
STAGE_REQUIRED = {"train": ("epochs",), "prune": ("amount",), "export": ("format",)}
TOP_KEYS = {"name": _text, "out": _text, "data": _options, "model": _options, "stages": None,
            "device": _text, "threads": _integer(1)}
DATA_KEYS = {"name": _choice(DATASET_NAMES), "dir": _text, "limit_train": _integer(1), "limit_test": _integer(1)}
MODEL_KEYS = {"zoo": _choice(model_names()), "options": _options, "pretrained": _choice(model_names()),
              "checkpoint": _text, "file": _text}
MODEL_SOURCES = ("zoo", "pretrained", "file")


# --- the validated recipe ---------------------------------------------------------------------

@dataclass(frozen=True)
class DataSpec:
    name: str
    dir: Path | None = None
    limit_train: int | None = None
    limit_test: int | None = None


@dataclass(frozen=True)
class ModelSource:
    """``kind`` is zoo (``name`` + builder ``options``), pretrained (``name`` + ``path`` to the
    checkpoint) or file (``path`` to a model file)."""

    kind: str
    name: str | None = None
    path: Path | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Distill:
    teacher: str = "original"
    temperature: float = 4.0
    alpha: float = 0.9


@dataclass(frozen=True)
class EncodeSettings:
    float_dtype: str = "float32"


@dataclass(frozen=True)
class ExportSettings:
    format: str


@dataclass(frozen=True)
class Stage:
    """One stage. ``settings``: PruneSettings, StructuredSettings, QuantConfig, EncodeSettings,
    ExportSettings, or None (train); ``train``: the training settings of a training stage;
    ``options``: the stage's keys as written (after checking), recorded in ``stage.json``.
    A quantize stage may have ``mixed`` (per-layer bits under a size budget; its QuantConfig's
    ``bits`` is then the largest option) and ``calibration_images`` (None: the job's default)."""

    kind: str
    options: dict[str, Any]
    settings: Any = None
    train: TrainConfig | None = None
    distill: Distill | None = None
    mixed: MixedPrecision | None = None
    calibration_images: int | None = None


@dataclass(frozen=True)
class Recipe:
    name: str
    out: Path
    data: DataSpec
    model: ModelSource
    stages: tuple[Stage, ...]
    device: str = "auto"
    threads: int | None = None
    source: str = "<recipe>"


def load_recipe(path: str | os.PathLike) -> Recipe:
    """Read and validate the recipe file at ``path``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read recipe {path}: {exc}") from None
    return parse_recipe(text, source=str(path), base_dir=path.parent)


def parse_recipe(text: str, *, source: str = "<recipe>", base_dir: str | os.PathLike = ".") -> Recipe:
    """Validate the YAML ``text`` of a recipe; relative paths inside resolve against ``base_dir``."""
    data, lines = _compose(text, source)
    return _Validator(source, lines, Path(base_dir)).recipe(data)


def _mixed(options: dict[str, Any]) -> MixedPrecision | None:
    """The mixed-precision settings of a checked quantize stage (None without ``mixed_budget_kb``),
    as ``deepshrink quantize --mixed-budget-kb`` makes them."""
    if "mixed_budget_kb" not in options:
        return None
    chosen = {"criterion": options["mixed_criterion"]} if "mixed_criterion" in options else {}
    if "mixed_bits" in options:
        chosen["bits_options"] = tuple(sorted(set(options["mixed_bits"])))
    return MixedPrecision(round(options["mixed_budget_kb"] * 1024), **chosen)


# --- YAML -> plain data with the line of every key path ---------------------------------------

def _compose(text: str, source: str) -> tuple[Any, dict[str, int]]:
    loader = None
    try:
        loader = yaml.SafeLoader(text)  # the reader rejects non-printable characters right here
        root = loader.get_single_node()
        if root is None:
            raise UserError(f"{source}: the recipe is empty")
        lines: dict[str, int] = {}
        return _plain(root, "", lines, loader, source), lines
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise UserError(f"{source}{where}: not valid YAML: {problem}") from None
    finally:
        if loader is not None:
            loader.dispose()


def _plain(node: yaml.Node, path: str, lines: dict[str, int], loader: yaml.SafeLoader, source: str) -> Any:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        result = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            child = f"{path}.{key}" if path else str(key)
            line = key_node.start_mark.line + 1
            if not isinstance(key, str):
                raise UserError(f"{source} line {line}: {path or 'recipe'}: keys must be strings, got {key!r}")
            if key in result:
                raise UserError(f"{source} line {line}: {child}: duplicate key")
            lines[child] = line
            result[key] = _plain(value_node, child, lines, loader, source)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_plain(item, f"{path}[{i}]", lines, loader, source) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


# --- validation ---------------------------------------------------------------------------------

class _Validator:
    def __init__(self, source: str, lines: dict[str, int], base_dir: Path):
        self.source, self.lines, self.base_dir = source, lines, base_dir

    def fail(self, path: str, message: str) -> UserError:
        line = self.lines.get(path)
        while line is None and path:  # a missing key: point at its parent
            path = path.rpartition(".")[0] if "." in path else ""
            line = self.lines.get(path)
        where = f" line {line}" if line is not None else ""
        return UserError(f"{self.source}{where}: {path or 'recipe'}: {message}")

    def mapping(self, value: Any, path: str, keys: dict[str, Callable | None],
                required: tuple[str, ...] = ()) -> dict[str, Any]:
        """``value`` checked as a mapping with only ``keys`` (None: checked by the caller)."""
        if not isinstance(value, dict):
            raise self.fail(path, f"must be a mapping, got {value!r}")
        checked = {}
        for key, item in value.items():
            child = f"{path}.{key}" if path else key
            if key not in keys:
                raise self.fail(child, f"unknown key{_did_you_mean(key, keys)}; "
                                       f"allowed: {', '.join(sorted(keys))}")
            try:
                checked[key] = item if keys[key] is None else keys[key](item)
            except _Bad as exc:
                raise self.fail(child, str(exc)) from None
        for key in required:
            if key not in value:
                raise self.fail(path, f"missing required key {key!r}")
        return checked

    def path_of(self, text: str) -> Path:
        path = Path(text).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    def recipe(self, data: Any) -> Recipe:
        top = self.mapping(data, "", TOP_KEYS, ("name", "out", "data", "model", "stages"))
        data_spec = self.data(top["data"])
        model = self.model(top["model"])
        stages = top["stages"]
        if not isinstance(stages, list) or not stages:
            raise self.fail("stages", "must be a non-empty list of stages")
        checked = tuple(self.stage(item, f"stages[{i}]", top.get("device", "auto")) for i, item in enumerate(stages))
        self.order(model, checked)
        return Recipe(top["name"], Path(top["out"]), data_spec, model, checked, top.get("device", "auto"),
                      top.get("threads"), self.source)

    def data(self, value: Any) -> DataSpec:
        data = self.mapping(value, "data", DATA_KEYS, ("name",))
        directory = self.path_of(data["dir"]) if "dir" in data else None
        if data["name"] == "cifar10" and directory is None:
            raise self.fail("data", "cifar10 needs 'dir' (the folder holding the dataset)")
        return DataSpec(data["name"], directory, data.get("limit_train"), data.get("limit_test"))

    def model(self, value: Any) -> ModelSource:
        model = self.mapping(value, "model", MODEL_KEYS)
        kinds = [kind for kind in MODEL_SOURCES if kind in model]
        if len(kinds) != 1:
            raise self.fail("model", f"give exactly one of {', '.join(MODEL_SOURCES)}")
        kind = kinds[0]
        extra = {"zoo": ("checkpoint", "file"), "pretrained": ("options", "file"), "file": ("options", "checkpoint")}
        for key in extra[kind]:
            if key in model:
                raise self.fail(f"model.{key}", f"does not apply to a {kind} model")
        if kind == "zoo":
            return ModelSource("zoo", model["zoo"], options=model.get("options", {}))
        if kind == "pretrained":
            if "checkpoint" not in model:
                raise self.fail("model", "missing required key 'checkpoint' (the published checkpoint file)")
            return ModelSource("pretrained", model["pretrained"], self.path_of(model["checkpoint"]))
        return ModelSource("file", path=self.path_of(model["file"]))

    def stage(self, value: Any, path: str, device: str) -> Stage:
        if not isinstance(value, dict) or len(value) != 1:
            raise self.fail(path, f"must be a mapping with one key, the stage kind ({', '.join(STAGE_KINDS)})")
        (kind, body), = value.items()
        if kind not in STAGE_KINDS:
            raise self.fail(f"{path}.{kind}", f"unknown stage{_did_you_mean(kind, STAGE_KINDS)}; "
                                              f"choose one of: {', '.join(STAGE_KINDS)}")
        path = f"{path}.{kind}"
        training = kind in ("train", *COMPRESSING)
        keys = {**STAGE_KEYS[kind], **({k: check for k, (_, check) in TRAIN_KEYS.items()} if training else {})}
        options = self.mapping({} if body is None else body, path, keys, STAGE_REQUIRED.get(kind, ()))
        self.ranges(kind, options, path)
        train = self.train_config(options, path, device, default_epochs=0) if training else None
        try:
            settings = self.settings(kind, options, train)
            mixed = _mixed(options) if kind == "quantize" else None
        except UserError as exc:
            raise self.fail(path, str(exc)) from None
        distill = None
        if "distill" in options:
            distill = Distill(**self.mapping(options["distill"], f"{path}.distill", DISTILL_KEYS))
            if not train.epochs:
                raise self.fail(f"{path}.distill", "distils during fine-tuning: give the stage epochs > 0")
        return Stage(kind, options, settings, train, distill, mixed, options.get("calibration_images"))

    def ranges(self, kind: str, options: dict[str, Any], path: str) -> None:
        """Ranges that depend on another key of the stage: prune amount, quantization bits."""
        if kind == "prune" and options.get("criterion") != "std" and not options["amount"] < 1:
            raise self.fail(f"{path}.amount", f"must be a sparsity in [0, 1), got {options['amount']}")
        if kind != "quantize":
            return
        method = options.get("method", QuantConfig.method)
        allowed = BITS if method == "linear" else KMEANS_BITS
        shown = "2..8 or 16" if 16 in allowed else "2..8"
        if "mixed_budget_kb" in options:
            if "bits" in options:
                raise self.fail(f"{path}.bits", "excludes mixed_budget_kb: the budget chooses the bits per layer")
            for bits in options.get("mixed_bits", ()):
                if bits not in allowed:
                    raise self.fail(f"{path}.mixed_bits",
                                    f"must hold bits {shown} for {method} quantization, got {bits}")
        else:
            if "bits" not in options:
                raise self.fail(path, "missing required key 'bits' (or 'mixed_budget_kb' for per-layer bits)")
            if options["bits"] not in allowed:
                raise self.fail(f"{path}.bits",
                                f"must be one of {shown} for {method} quantization, got {options['bits']}")
            for key in ("mixed_criterion", "mixed_bits"):
                if key in options:
                    raise self.fail(f"{path}.{key}", "applies to mixed_budget_kb")
        if "calibration_images" in options and "activation_bits" not in options and "mixed_budget_kb" not in options:
            raise self.fail(f"{path}.calibration_images", "applies to activation_bits and mixed_budget_kb")

    def train_config(self, options: dict[str, Any], path: str, device: str, default_epochs: int) -> TrainConfig:
        values = {name: options[key] for key, (name, _) in TRAIN_KEYS.items() if key in options}
        values.setdefault("epochs", default_epochs)
        try:
            return TrainConfig(**values, device=device)
        except UserError as exc:
            raise self.fail(path, str(exc)) from None

    @staticmethod
    def settings(kind: str, options: dict[str, Any], train: TrainConfig | None) -> Any:
        own = {k: v for k, v in options.items() if k in STAGE_KEYS[kind] and k != "distill"}
        seed = {"seed": options["seed"]} if "seed" in options else {}
        if kind == "prune":
            settings = PruneSettings(**own, **seed)
            settings.check(train.epochs)
            return settings
        if kind == "structured":
            settings = StructuredSettings(**own, **seed)
            settings.check()
            return settings
        if kind == "quantize":
            own = {k: v for k, v in own.items() if k not in QUANTIZE_JOB_KEYS}
            if "mixed_budget_kb" in options:  # bits per layer; the config holds the largest option
                own["bits"] = max(options.get("mixed_bits", MIXED_DEFAULT_BITS))
            return QuantConfig(**own, **seed)
        if kind == "encode":
            return EncodeSettings(**own)
        if kind == "export":
            return ExportSettings(**own)
        return None

    def order(self, model: ModelSource, stages: tuple[Stage, ...]) -> None:
        """Checks across stages: a zoo model trains first; nothing follows an export; distil
        only from a trained teacher; quantize at most once, before encode."""
        if model.kind == "zoo" and stages[0].kind != "train":
            raise self.fail("stages[0]", f"a zoo model starts untrained: the first stage must be train, "
                                         f"not {stages[0].kind}")
        quantized = encoded = False
        for i, stage in enumerate(stages):
            path = f"stages[{i}].{stage.kind}"
            if stage.kind == "export" and i != len(stages) - 1:
                raise self.fail(path, "export must be the last stage")
            if stage.kind == "quantize" and quantized:
                raise self.fail(path, "the model is already quantized by an earlier stage")
            if stage.kind in COMPRESSING + ("train",) and encoded:
                raise self.fail(path, "stages after encode may only export")
            quantized |= stage.kind == "quantize"
            encoded |= stage.kind == "encode"
            if stage.distill is not None and model.kind == "zoo" and i == 0:
                raise self.fail(f"{path}.distill", "needs a trained teacher: the model is untrained before this stage")
