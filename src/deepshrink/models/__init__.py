"""Model zoo (``build_model``), architecture specs, builders outside the zoo
(``PKG.MODULE:FUNCTION``) and model files (``save_model``/``load_model``)."""

from deepshrink.models.builders import BuilderNotAllowed
from deepshrink.models.registry import (
    ArchSpec,
    ModelEntry,
    build_model,
    builder_spec,
    get_entry,
    make_spec,
    model_names,
    register_model,
    resolve_spec,
)

from deepshrink.models.file import InputSpec, ModelInfo, ModelPath, load_model, read_info, save_model

# Importing the zoo modules registers their builders.
from deepshrink.models import zoo  # noqa: F401,E402
from deepshrink.models import early_exit  # noqa: F401,E402  (registers the "early-exit" wrapper)

__all__ = [
    "ArchSpec",
    "BuilderNotAllowed",
    "InputSpec",
    "ModelInfo",
    "ModelPath",
    "builder_spec",
    "resolve_spec",
    "load_model",
    "read_info",
    "save_model",
    "ModelEntry",
    "build_model",
    "get_entry",
    "make_spec",
    "model_names",
    "register_model",
]
