"""The import job: a published CIFAR ResNet checkpoint -> a deepshrink model file."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from deepshrink.data.cifar import CIFAR10_CLASSES
from deepshrink.files import check_output
from deepshrink.models import InputSpec, ModelInfo, save_model
from deepshrink.models.pretrained import PRETRAINED_MEAN, PRETRAINED_STD, import_pretrained


def import_pretrained_job(model_name: str, checkpoint: str | os.PathLike,
                          out: str | os.PathLike) -> ModelInfo:
    """Load ``checkpoint`` into zoo model ``model_name`` and save it as a model file at ``out``.

    The model file records the normalisation the checkpoint was trained with (ImageNet
    statistics for the akamaster CIFAR ResNets) so evaluation feeds it the inputs it expects.
    """
    check_output(out, [checkpoint])
    model, spec = import_pretrained(model_name, checkpoint)
    digest = hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest()
    info = ModelInfo(spec, InputSpec((3, 32, 32), PRETRAINED_MEAN, PRETRAINED_STD),
                     classes=list(CIFAR10_CLASSES), dataset="cifar10",
                     history=[{"stage": "import", "source": Path(checkpoint).name, "sha256": digest}])
    save_model(out, model, info)
    return info
