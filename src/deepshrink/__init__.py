"""deepshrink: make convolutional networks really smaller and really faster.

The public API is a few verbs that act on a model in place, each with a small config that
checks itself, and model files for any network (``import deepshrink as ds``)::

    ds.prune_(model, ds.PruneConfig(sparsity=0.7, scope="global"))          # fine-grained masks
    ds.quantize_(model, ds.QuantConfig(method="kmeans", bits=4))             # weight quantizers
    result = ds.prune_channels(model, (3, 32, 32), ds.StructuredConfig(ratio=0.3))  # smaller layers
    ds.save_dsz("model.dsz", model)                  # weights, masks, quantizers, resized layers
    ds.load_dsz("model.dsz", model=MyNet())          # into a fresh instance of your class

Each verb takes an optional ``filter_fn(module, fqn) -> bool`` choosing the layers it acts on
(the default is in :mod:`deepshrink.prune.select`). Training-time compression (schedules,
distillation, QAT) is ordinary training: your own loop, or :class:`Trainer` with hooks.

Stages, one package each: ``data`` -> ``models`` -> ``train`` -> ``prune`` -> ``quant``
-> ``codec`` -> ``analysis``, tied together by ``pipeline``; ``cli`` is a thin layer on top.
"""

__version__ = "0.1.0"

from deepshrink import stages  # noqa: F401,E402  (the stage packages register the kinds model files name)
from deepshrink.codec import load_dsz, save_dsz  # noqa: E402
from deepshrink.errors import ConfigError, UserError  # noqa: E402
from deepshrink.models import ArchSpec, InputSpec, ModelInfo, build_model, load_model, register_model, save_model  # noqa: E402
from deepshrink.prune import FilterFn, PruneConfig, prune_, pruning_hook  # noqa: E402
from deepshrink.prune.structured import StructuredConfig, StructuredResult, prune_channels  # noqa: E402
from deepshrink.quant import QuantConfig, calibrate_activations, quantize_  # noqa: E402
from deepshrink.train import Trainer, TrainConfig, TrainHook  # noqa: E402

__all__ = [
    "ArchSpec",
    "ConfigError",
    "FilterFn",
    "InputSpec",
    "ModelInfo",
    "PruneConfig",
    "QuantConfig",
    "StructuredConfig",
    "StructuredResult",
    "TrainConfig",
    "TrainHook",
    "Trainer",
    "UserError",
    "__version__",
    "build_model",
    "calibrate_activations",
    "load_dsz",
    "load_model",
    "prune_",
    "prune_channels",
    "pruning_hook",
    "quantize_",
    "register_model",
    "save_dsz",
    "save_model",
]
