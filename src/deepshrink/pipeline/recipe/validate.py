"""Validation of a recipe's plain data against the schema, every mistake named by its line."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from deepshrink.data import FolderSource
from deepshrink.errors import ConfigError, UserError
from deepshrink.models.builders import check_builder_name
from deepshrink.pipeline.quantize import MixedPrecision, budget_bytes
from deepshrink.pipeline.recipe.schema import (COMPRESSING, DATA_KEYS, DISTILL_KEYS, FOLDER_KEYS, MODEL_KEYS,
                                               MODEL_SOURCES, QUANTIZE_JOB_KEYS, STAGE_KEYS, STAGE_KINDS,
                                               STAGE_REQUIRED, TOP_KEYS, TRAIN_KEYS)
from deepshrink.pipeline.recipe.spec import (DataSpec, Distill, EncodeSettings, ExportSettings, ModelSource, Recipe,
                                             Stage)
from deepshrink.pipeline.recipe.values import BadValue, did_you_mean
from deepshrink.prune.config import PruneConfig
from deepshrink.prune.structured import StructuredConfig
from deepshrink.quant import BITS, QuantConfig
from deepshrink.quant.api import KMEANS_BITS
from deepshrink.quant.mixed import DEFAULT_BITS as MIXED_DEFAULT_BITS
from deepshrink.train import TrainConfig


def mixed_precision_of(options: dict[str, Any]) -> MixedPrecision | None:
    """The mixed-precision settings of a checked quantize stage (None without ``mixed_budget_kb``),
    as ``deepshrink quantize --mixed-budget-kb`` makes them."""
    if "mixed_budget_kb" not in options:
        return None
    chosen = {"criterion": options["mixed_criterion"]} if "mixed_criterion" in options else {}
    if "mixed_bits" in options:
        chosen["bits_options"] = tuple(sorted(set(options["mixed_bits"])))
    return MixedPrecision(budget_bytes(options["mixed_budget_kb"]), **chosen)


# config fields whose recipe key has another name
RECIPE_KEYS = {"sparsity": "amount", "std_factor": "amount"}


def recipe_key(field: str) -> str:
    """The recipe key of a stage config's field (``PruneConfig.sparsity`` is ``amount``)."""
    return RECIPE_KEYS.get(field, field)


class Validator:
    """Checks plain recipe data; ``fail`` builds the error naming the file, line and key path."""

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
                raise self.fail(child, f"unknown key{did_you_mean(key, keys)}; "
                                       f"allowed: {', '.join(sorted(keys))}")
            try:
                checked[key] = item if keys[key] is None else keys[key](item)
            except BadValue as exc:
                raise self.fail(child, str(exc)) from None
        for key in required:
            if key not in value:
                raise self.fail(path, f"missing required key {key!r}")
        return checked

    def path_of(self, text: str) -> Path:
        path = Path(text).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    def recipe(self, data: Any, *, out_given: bool = False) -> Recipe:
        """``out_given``: the run folder comes from elsewhere (``run --out DIR``), so the recipe
        may leave ``out`` out; without it, a recipe without ``out`` names both."""
        top = self.mapping(data, "", TOP_KEYS, ("name", "data", "model", "stages"))
        if "out" not in top and not out_given:
            raise self.fail("", "missing required key 'out' (the run folder); "
                                "add out: DIR to the recipe or give deepshrink run --out DIR")
        data_spec = self.data(top["data"])
        model = self.model(top["model"])
        stages = top["stages"]
        if not isinstance(stages, list) or not stages:
            raise self.fail("stages", "must be a non-empty list of stages")
        checked = tuple(self.stage(item, f"stages[{i}]", top.get("device", "auto")) for i, item in enumerate(stages))
        self.order(model, checked)
        out = Path(top["out"]) if "out" in top else None
        return Recipe(top["name"], out, data_spec, model, checked, top.get("device", "auto"),
                      top.get("threads"), self.source)

    def data(self, value: Any) -> DataSpec:
        data = self.mapping(value, "data", DATA_KEYS)
        if ("name" in data) == ("folder" in data):
            raise self.fail("data", "give exactly one of name (a dataset) and folder (your own images)")
        if "folder" in data:
            return DataSpec("folder", None, data.get("limit_train"), data.get("limit_test"), self.folder(data))
        for key in FOLDER_KEYS:
            if key in data:
                raise self.fail(f"data.{key}", "applies only to data: {folder: DIR}")
        directory = self.path_of(data["dir"]) if "dir" in data else None
        if data["name"] == "cifar10" and directory is None:
            raise self.fail("data", "cifar10 needs 'dir' (the folder holding the dataset)")
        return DataSpec(data["name"], directory, data.get("limit_train"), data.get("limit_test"))

    def folder(self, data: dict[str, Any]) -> FolderSource:
        """The image-folder source of ``data: {folder: DIR, ...}`` (paths relative to the recipe)."""
        if "dir" in data:
            raise self.fail("data.dir", "does not apply to a folder dataset (folder names it)")
        options = {key: data[key] for key in FOLDER_KEYS if key in data}
        if "cache_dir" in options:
            options["cache_dir"] = self.path_of(options["cache_dir"])
        try:
            return FolderSource(self.path_of(data["folder"]), **options)
        except ConfigError as exc:
            raise self.fail(f"data.{exc.field}", exc.problem) from None

    def model(self, value: Any) -> ModelSource:
        model = self.mapping(value, "model", MODEL_KEYS)
        kinds = [kind for kind in MODEL_SOURCES if kind in model]
        if len(kinds) != 1:
            raise self.fail("model", f"give exactly one of {', '.join(MODEL_SOURCES)}")
        kind = kinds[0]
        applies = {"zoo": ("options",), "builder": ("kwargs",), "pretrained": ("checkpoint",), "file": ()}
        for key in ("options", "kwargs", "checkpoint"):
            if key in model and key not in applies[kind]:
                raise self.fail(f"model.{key}", f"does not apply to a {kind} model")
        if kind == "zoo":
            return ModelSource("zoo", model["zoo"], options=model.get("options", {}))
        if kind == "builder":
            try:
                name = check_builder_name(model["builder"])
            except UserError as exc:
                raise self.fail("model.builder", str(exc)) from None
            return ModelSource("builder", name, options=model.get("kwargs", {}))
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
            raise self.fail(f"{path}.{kind}", f"unknown stage{did_you_mean(kind, STAGE_KINDS)}; "
                                              f"choose one of: {', '.join(STAGE_KINDS)}")
        path = f"{path}.{kind}"
        training = kind in ("train", *COMPRESSING)
        keys = {**STAGE_KEYS[kind], **({k: check for k, (_, check) in TRAIN_KEYS.items()} if training else {})}
        options = self.mapping({} if body is None else body, path, keys, STAGE_REQUIRED.get(kind, ()))
        self.ranges(kind, options, path)
        train = self.train_config(options, path, device, default_epochs=0) if training else None
        try:
            settings = self.settings(kind, options, train)
            mixed = mixed_precision_of(options) if kind == "quantize" else None
        except ConfigError as exc:  # a config names its field; the recipe names its key
            key = recipe_key(exc.field)
            if key in options:
                raise self.fail(f"{path}.{key}", exc.problem) from None
            raise self.fail(path, f"{key} {exc.problem}") from None
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
        except ConfigError as exc:  # name the recipe key of the field (lr_schedule for schedule)
            key = next((k for k, (name, _) in TRAIN_KEYS.items() if name == exc.field), exc.field)
            if key in options:
                raise self.fail(f"{path}.{key}", exc.problem) from None
            raise self.fail(path, f"{key} {exc.problem}") from None
        except UserError as exc:
            raise self.fail(path, str(exc)) from None

    @staticmethod
    def settings(kind: str, options: dict[str, Any], train: TrainConfig | None) -> Any:
        own = {k: v for k, v in options.items() if k in STAGE_KEYS[kind] and k != "distill"}
        seed = {"seed": options["seed"]} if "seed" in options else {}
        if kind == "prune":
            amount = own.pop("amount")
            own["std_factor" if own.get("criterion") == "std" else "sparsity"] = amount
            settings = PruneConfig(**own, **seed)
            settings.check_epochs(train.epochs)
            return settings
        if kind == "structured":
            settings = StructuredConfig(**own, **seed)
            settings.check_epochs(train.epochs)
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
