"""Argument types and the parser class shared by all commands."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from typing import Any, NoReturn

import torch


class HelpFormatter(argparse.HelpFormatter):
    """``--help`` text: descriptions (module docstrings) without reStructuredText markup, and
    every option's default after its help, unless the help already names it."""

    def _format_text(self, text: str) -> str:
        return super()._format_text(_plain(text))

    def _get_help_string(self, action: argparse.Action) -> str:
        text, default = action.help or "", action.default
        if not action.option_strings or "default" in text or not _worth_showing(default):
            return text
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else "%(default)s"
        return f"{text} (default: {shown})"


def _worth_showing(default: Any) -> bool:
    """A default that says something: not None, not a flag's False, not an empty list."""
    if default is None or default is False or default is argparse.SUPPRESS:
        return False
    return not (isinstance(default, (list, tuple)) and not default)


def _plain(text: str) -> str:
    """``text`` without reStructuredText literals and roles: ``x`` and :func:`x` -> x."""
    return re.sub(r"(?::\w+:)?`{1,2}~?([^`]+)`{1,2}", r"\1", text)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr and exit code 2; its ``--help``
    uses :class:`HelpFormatter`."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        return finish_data_args(self, namespace), extras


def _number(kind, name: str, low=None, high=None, low_open=False, high_open=False):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {name}") from None
        if value != value or (low is not None and (value < low or (low_open and value == low))) \
                or (high is not None and (value > high or (high_open and value == high))):
            left = "(" if low_open else "["
            right = ")" if high_open else "]"
            raise argparse.ArgumentTypeError(f"{text} is out of range {left}{low}, {high}{right}")
        return value

    return parse


any_number = _number(float, "a number")  # ranges: the stage config checks them (errors name the flag)
any_int = _number(int, "an integer")
positive_int = _number(int, "an integer", low=1)
nonneg_int = _number(int, "an integer", low=0)
positive_float = _number(float, "a number", low=0, low_open=True)
nonneg_float = _number(float, "a number", low=0)
unit_interval = _number(float, "a number", low=0, high=1, high_open=True)
fraction_up_to_one = _number(float, "a number", low=0, high=1, low_open=True)


def flag_of(args: argparse.Namespace, field: str) -> str:
    """The flag of a stage config's ``field`` in this command: ``args.config_flags[field]``, or
    ``--field-name`` by default."""
    return getattr(args, "config_flags", {}).get(field, "--" + field.replace("_", "-"))


def key_value(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE parsed as JSON when it can be (numbers, true/false), else a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key, value


def model_choice(text: str) -> str:
    """``--model``: a zoo name or a builder ``PKG.MODULE:FUNCTION`` (checked, not imported yet)."""
    from deepshrink.errors import UserError
    from deepshrink.models import model_names
    from deepshrink.models.builders import check_builder_name, is_builder_name

    if is_builder_name(text):
        try:
            return check_builder_name(text)
        except UserError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    if text not in model_names():
        raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose a zoo model: {', '.join(model_names())}; "
                                         "or a builder PKG.MODULE:FUNCTION)")
    return text


def add_builder_args(parser: argparse.ArgumentParser, model_files: tuple[str, ...] = ("model_file", "teacher")) -> None:
    """``--allow-builder PKG`` (repeatable): the model files named by the arguments ``model_files``
    (their dests) may name builders from these packages."""
    parser.add_argument("--allow-builder", metavar="PKG", action="append", default=[],
                        help="let model files that name a builder PKG.MODULE:FUNCTION from package PKG import "
                             "it (only for code you trust; repeatable)")
    parser.set_defaults(model_file_args=model_files)


def allowed_builders(args: argparse.Namespace) -> tuple[str, ...]:
    """The packages whose builders model files may name: ``--allow-builder``, and the package of
    a builder given with ``--model`` (named by the user, so allowed for this run)."""
    from deepshrink.models.builders import builder_package, is_builder_name

    model = getattr(args, "model", None)
    explicit = (builder_package(model),) if isinstance(model, str) and is_builder_name(model) else ()
    return (*getattr(args, "allow_builder", ()), *explicit)


def with_allowed_builders(args: argparse.Namespace) -> argparse.Namespace:
    """``args`` with every model-file argument (those :func:`add_builder_args` named) a
    :class:`~deepshrink.models.ModelPath` carrying :func:`allowed_builders`, so that the jobs
    load them with that permission; in place, returned."""
    from deepshrink.errors import UserError
    from deepshrink.models import ModelPath
    from deepshrink.models.builders import check_allow_list

    if not hasattr(args, "allow_builder"):
        return args
    for package in args.allow_builder:
        try:
            check_allow_list([package])
        except UserError:
            raise UserError(f"--allow-builder {package!r} is not a package name such as mypkg") from None
    allowed = allowed_builders(args)
    for name in args.model_file_args:
        if isinstance(getattr(args, name, None), str):
            setattr(args, name, ModelPath(getattr(args, name), allowed))
    return args


def set_threads(threads: int | None) -> None:
    """Set torch's intra-op thread count when asked."""
    if threads is not None:
        torch.set_num_threads(threads)


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


def data_choice(text: str) -> str:
    """``--data``: a dataset name or ``folder:DIR`` (the folder is read later)."""
    from deepshrink.data import DATASET_NAMES, is_folder_name

    if text in DATASET_NAMES or (is_folder_name(text) and text != "folder:"):
        return text
    raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from {', '.join(DATASET_NAMES)}, "
                                     "or folder:DIR for your own images)")


# the options of --data folder:DIR, named as FolderSource's fields
FOLDER_OPTIONS = ("image_size", "cache_dir", "skip_bad_images", "test_fraction")


def add_data_args(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    parser.add_argument("--data", required=required, type=data_choice, metavar="DATA",
                        help="dataset: cifar10, digits, mnist, synthetic, or folder:DIR (your own images, one "
                             "subfolder per class; DIR/train and DIR/val or DIR/test, or one tree split per class)")
    parser.add_argument("--data-dir", metavar="DIR",
                        help="folder holding the dataset (cifar10: cifar10_{train,test}.npz, "
                             "cifar-10-batches-py or cifar-10-batches-bin; mnist: idx files)")
    folder = parser.add_argument_group("--data folder:DIR")
    folder.add_argument("--image-size", type=positive_int, metavar="N",
                        help="side of the square images: shorter side resized to N, then centre-cropped (default 32)")
    folder.add_argument("--cache-dir", metavar="DIR",
                        help="where decoded images are cached (default $XDG_CACHE_HOME/deepshrink or ~/.cache/deepshrink)")
    folder.add_argument("--skip-bad-images", action="store_true", default=None,
                        help="leave out files that are not readable images (counted on stderr) instead of failing")
    folder.add_argument("--test-fraction", type=fraction_up_to_one, metavar="F",
                        help="test share of each class when DIR has no train/ folder (default 0.2)")


def finish_data_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """``args.data`` as a :class:`~deepshrink.data.FolderSource` for ``folder:DIR``, with the
    folder options; those options without a folder are a usage error. In place, returned."""
    from deepshrink.data import folder_source, is_folder_name
    from deepshrink.errors import ConfigError

    if not hasattr(args, "image_size"):  # a command without add_data_args
        return args
    given = {name: getattr(args, name) for name in FOLDER_OPTIONS if getattr(args, name, None) is not None}
    data = getattr(args, "data", None)
    if not is_folder_name(data):
        if given:
            parser.error(f"{', '.join(flag_of(args, name) for name in given)}: only with --data folder:DIR")
        return args
    if isinstance(data, str):
        try:
            args.data = dataclasses.replace(folder_source(data), **given)
        except ConfigError as exc:
            parser.error(exc.naming(lambda field: flag_of(args, field)))
    return args


def add_distill_args(parser: argparse.ArgumentParser) -> None:
    """``--teacher MODEL_FILE --kd-temperature T --kd-alpha A`` (knowledge distillation)."""
    parser.add_argument("--teacher", metavar="MODEL_FILE", help="distil from this model's soft targets")
    parser.add_argument("--kd-temperature", type=positive_float, metavar="T", help="softmax temperature (default 4)")
    parser.add_argument("--kd-alpha", type=_number(float, "a number", low=0, high=1), metavar="A",
                        help="weight of the distillation term in [0, 1]; 1 - A weighs the labels (default 0.9)")


def distill_hooks(args: argparse.Namespace, train_set) -> list:
    """The distillation hook the arguments ask for (none without ``--teacher``)."""
    from deepshrink.errors import UserError
    from deepshrink.pipeline.train import distillation_hook

    if args.teacher is None:
        if args.kd_temperature is not None or args.kd_alpha is not None:
            raise UserError("--kd-temperature and --kd-alpha need --teacher")
        return []
    options = {"temperature": args.kd_temperature, "alpha": args.kd_alpha}
    return [distillation_hook(args.teacher, train_set, **{k: v for k, v in options.items() if v is not None})]
