"""Post-training quantization of the pretrained ResNet-20 on the real CIFAR-10 test set."""

import pytest
from torch.nn.utils import parametrize

from deepshrink.data import BatchLoader, load_dataset
from deepshrink.models.pretrained import PRETRAINED_MEAN, PRETRAINED_STD, import_pretrained
from deepshrink.quant import QuantConfig, quantize_
from deepshrink.train import evaluate


@pytest.mark.slow
@pytest.mark.parametrize("config,least", [
    (QuantConfig("linear", 8), 0.9150),   # float: 0.9173
    (QuantConfig("kmeans", 4), 0.9050),
])
def test_ptq_accuracy(shared_data, config, least):
    model, _ = import_pretrained("resnet20", shared_data / "pretrained" / "resnet20-12fca82f.th")
    quantize_(model, config)
    loader = BatchLoader(load_dataset("cifar10", "test", shared_data), 500, mean=PRETRAINED_MEAN, std=PRETRAINED_STD)
    with parametrize.cached():
        assert evaluate(model, loader).top1 >= least
