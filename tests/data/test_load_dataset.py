import pytest

from deepshrink.data import DATASET_NAMES, load_dataset, needs_data_dir
from deepshrink.errors import UserError


def test_builtin_datasets_need_no_folder():
    assert [needs_data_dir(name) for name in DATASET_NAMES] == [True, False, True, False]
    assert len(load_dataset("digits", "test")) == 360
    assert load_dataset("synthetic", "train").name == "synthetic"


def test_errors():
    with pytest.raises(UserError, match="cifar10, digits, mnist, synthetic"):
        load_dataset("imagenet", "train")
    with pytest.raises(UserError, match="choose one of"):
        needs_data_dir("imagenet")
    with pytest.raises(UserError, match="'train' or 'test'"):
        load_dataset("digits", "val")
    with pytest.raises(UserError, match="load_dataset.data_dir is needed for cifar10: .*cifar-10-batches-py"):
        load_dataset("cifar10", "train")
    with pytest.raises(UserError, match="load_dataset.data_dir is needed for mnist: .*train-images-idx3-ubyte"):
        load_dataset("mnist", "test")
