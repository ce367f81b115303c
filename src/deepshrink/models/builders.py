"""Builders outside the zoo: ``PKG.MODULE:FUNCTION`` names a callable that returns the model.

A model file may record such a builder (``"arch": {"builder": "mypkg.nets:small_cnn", "kwargs":
{...}}``) instead of a zoo name. Reading the file must never choose code to import by itself, so
a builder is imported only when the caller allowed its package (``allow_builders=("mypkg",)``:
the module is ``mypkg`` or below it) and the function found is defined there too (a function
re-exported from ``os`` into an allowed module is still refused). Standard-library modules,
``deepshrink`` itself and a few packages whose functions load pickles or run downloaded code
(:data:`NEVER`) are never builders, whatever is allowed. A builder the user names explicitly
(``make_spec("mypkg.nets:small_cnn")``, ``--model`` on the command line) counts as allowed.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from typing import Any, Callable, Iterable

from torch import nn

from deepshrink.errors import UserError

__all__ = ["NEVER", "BuilderNotAllowed", "builder_package", "check_allow_list", "check_builder_name",
           "is_builder_name", "resolve_builder"]

_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
_MODULE = re.compile(rf"{_IDENTIFIER}(\.{_IDENTIFIER})*")
_BUILDER = re.compile(rf"({_MODULE.pattern}):({_IDENTIFIER})")
# Besides the standard library: packages whose callables unpickle (numpy.load), run downloaded
# code (torch.hub.load) or install things; and this package, whose models are zoo names.
NEVER = frozenset(sys.stdlib_module_names) | {"deepshrink", "torch", "numpy", "pip", "setuptools",
                                              "pkg_resources", "pytest", "_pytest"}


class BuilderNotAllowed(UserError):
    """A model file names a builder whose package the caller did not allow."""

    def __init__(self, builder: str, source: str | None = None):
        self.builder, self.package, self.source = builder, builder_package(builder), source
        super().__init__(self.naming("allow_builders=('{package}',)"))

    def naming(self, how: str) -> str:
        """The message with the way to allow the package: ``how`` formatted with ``package``
        (``"--allow-builder {package}"`` on the command line)."""
        where = f"{self.source} names" if self.source else "the model names"
        return (f"{where} the builder {self.builder!r}, whose package is not allowed; "
                f"if you trust it, allow it with {how.format(package=self.package)}")


def is_builder_name(name: str) -> bool:
    """Whether ``name`` is meant as ``PKG.MODULE:FUNCTION`` (zoo names have no colon)."""
    return ":" in name


def check_builder_name(name: Any) -> str:
    """``name`` when it is ``PKG.MODULE:FUNCTION`` (dotted identifiers, no dunder part); else a
    :class:`UserError` showing the syntax."""
    match = _BUILDER.fullmatch(name) if isinstance(name, str) else None
    parts = re.split(r"[.:]", name) if match else []
    if not match or any(part.startswith("__") for part in parts):
        raise UserError(f"builder {name!r} is not PKG.MODULE:FUNCTION (dotted Python names, a colon, "
                        "the function's name), e.g. mypkg.nets:small_cnn")
    return name


def builder_package(name: str) -> str:
    """The top-level package of builder ``name`` (``mypkg`` of ``mypkg.nets:small_cnn``)."""
    return name.partition(":")[0].split(".")[0]


def check_allow_list(allow_builders: Iterable[str]) -> tuple[str, ...]:
    """``allow_builders`` as a tuple of dotted package names; a :class:`UserError` for anything else."""
    if isinstance(allow_builders, str):
        raise UserError("allow_builders must be a list of package names, not one string")
    allowed = tuple(allow_builders)
    for package in allowed:
        if not isinstance(package, str) or not _MODULE.fullmatch(package):
            raise UserError(f"allow_builders holds {package!r}, which is not a package name such as 'mypkg'")
    return allowed


def resolve_builder(name: str, allow_builders: Iterable[str] = (), source: str | None = None) -> Callable[..., nn.Module]:
    """The callable ``name`` (``PKG.MODULE:FUNCTION``) names, imported only when its module is in
    one of the ``allow_builders`` packages and never when it is in :data:`NEVER`.

    :class:`BuilderNotAllowed` when not allowed, a :class:`UserError` for a bad name, a module
    that fails to import, or something that is not a callable defined in an allowed package.
    """
    module_name, _, function = check_builder_name(name).partition(":")
    allowed = check_allow_list(allow_builders)
    _refuse_never(name, module_name)
    if not _within(module_name, allowed):
        raise BuilderNotAllowed(name, source)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # the user's own module: any failure to import is theirs to fix
        hint = " (is it installed, or on PYTHONPATH?)" if isinstance(exc, ModuleNotFoundError) else ""
        raise UserError(f"cannot import the module of builder {name!r}: {type(exc).__name__}: {exc}{hint}") from None
    builder = getattr(module, function, None)
    if builder is None or not callable(builder):
        raise UserError(f"builder {name!r}: module {module_name} has no callable {function!r}")
    defined_in = getattr(builder, "__module__", None)
    if not isinstance(defined_in, str) or defined_in.split(".")[0] in NEVER or not _within(defined_in, allowed):
        raise UserError(f"builder {name!r} is defined in {defined_in!r}, not in an allowed package; "
                        "name the function where it is defined")
    return builder


def builder_parameters(builder: Callable[..., Any]) -> tuple[set[str], bool]:
    """(keyword names ``builder`` declares, whether it also takes ``**kwargs``)."""
    try:
        params = inspect.signature(builder).parameters
    except (TypeError, ValueError):  # some C-implemented callables have no signature
        return set(), True
    named = {p.name for p in params.values() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return named, any(p.kind is p.VAR_KEYWORD for p in params.values())


def _refuse_never(name: str, module_name: str) -> None:
    top = module_name.split(".")[0]
    if top in NEVER:
        what = "part of the standard library" if top in sys.stdlib_module_names else f"in {top!r}"
        raise UserError(f"builder {name!r} is refused: {module_name} is {what}, which never builds models")


def _within(module_name: str, packages: tuple[str, ...]) -> bool:
    return any(module_name == p or module_name.startswith(p + ".") for p in packages)
