import numpy as np
import torch
from sklearn.datasets import load_digits as sklearn_digits

from deepshrink.data.digits import MEAN, STD, load_digits


def test_sizes_labels_and_pixels():
    train, test = load_digits("train"), load_digits("test")
    assert (len(train), len(test)) == (1437, 360)
    assert train.image_shape == test.image_shape == (1, 8, 8) and train.images.dtype == torch.uint8
    for data in (train, test):
        assert set(data.labels.tolist()) == set(range(10)) and data.num_classes == 10
    assert not train.augment.hflip and train.augment.crop_padding == 1
    # together the splits are exactly sklearn's images, scaled 0..16 -> 0..255
    bunch = sklearn_digits()
    expected = np.rint(bunch.images * 255 / 16).astype(np.uint8).reshape(len(bunch.images), -1)
    ours = torch.cat([train.images, test.images]).reshape(1797, -1).numpy()
    assert sorted(map(bytes, ours)) == sorted(map(bytes, expected))
    assert int(train.images.max()) == 255 and int(train.images.min()) == 0
    assert torch.equal(load_digits("test").images, test.images)  # the split is fixed


def test_stored_stats_equal_recomputed():
    pixels = load_digits("train").images.double() / 255
    assert abs(pixels.mean().item() - MEAN[0]) < 1e-4
    assert abs(pixels.std(unbiased=False).item() - STD[0]) < 1e-4
