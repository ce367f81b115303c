"""Builders outside the zoo (PKG.MODULE:FUNCTION): strict names, imported only from allowed
packages, never from the standard library, recorded in model files as plain data."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from deepshrink.errors import UserError
from deepshrink.models import (ArchSpec, BuilderNotAllowed, InputSpec, ModelInfo, ModelPath, build_model,
                               load_model, make_spec, read_info, save_model)
from deepshrink.models.builders import check_builder_name, resolve_builder

BUILDERS = Path(__file__).resolve().parents[1] / "builders"
NET = "userzoo.nets:small_net"


@pytest.fixture(autouse=True)
def builders_on_path(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(BUILDERS))
    monkeypatch.setenv("DEEPSHRINK_TEST_MARKER", str(tmp_path / "imported"))


def _saved(tmp_path, name=NET, kwargs=None) -> Path:
    """A model file whose architecture names builder ``name`` (not imported to write it)."""
    spec = ArchSpec(name, kwargs if kwargs is not None else {"num_classes": 10, "in_channels": 1, "width": 8})
    model = make_spec(NET, num_classes=10, in_channels=1, image_size=8, width=8)
    info = ModelInfo(spec, InputSpec((1, 8, 8), (0.5,), (0.25,)), dataset="digits")
    return save_model(tmp_path / "m.safetensors", build_model(model), info)


@pytest.mark.parametrize("name", ["userzoo.nets", "userzoo.nets:", ":small_net", "userzoo..nets:small_net",
                                  "userzoo.nets:small_net:x", "userzoo/nets:small_net", "userzoo.nets:small-net",
                                  "userzoo.nets:__init__", "userzoo.__init__:small_net", " userzoo.nets:small_net",
                                  "1zoo.nets:small_net", 42])
def test_builder_names_are_checked_strictly(name):
    with pytest.raises(UserError, match="PKG.MODULE:FUNCTION"):
        check_builder_name(name)


def test_make_spec_with_a_builder_passes_the_sizes_it_takes_and_records_json():
    spec = make_spec(NET, num_classes=3, in_channels=1, image_size=8, width=4)
    assert spec.is_builder and spec.kwargs == {"num_classes": 3, "in_channels": 1, "image_size": 8, "width": 4}
    assert spec.to_dict() == {"builder": NET, "kwargs": spec.kwargs}
    assert build_model(spec)(torch.zeros(2, 1, 8, 8)).shape == (2, 3)
    with pytest.raises(UserError, match="has no option depth"):
        make_spec(NET, depth=3)
    with pytest.raises(UserError, match="not a torch.nn.Module"):
        build_model(make_spec("userzoo.nets:not_a_model"))


def test_file_records_the_builder_and_loads_only_when_allowed(tmp_path):
    path = _saved(tmp_path)
    meta = read_info(path)
    assert meta.arch.to_dict()["builder"] == NET and meta.arch.resolved is None
    with pytest.raises(BuilderNotAllowed, match=r"names the builder 'userzoo.nets:small_net'.*allow_builders=\('userzoo',\)"):
        load_model(path)
    with pytest.raises(BuilderNotAllowed):
        load_model(path, allow_builders=("userzoo.other",))
    model, info = load_model(path, allow_builders=("userzoo",))
    assert info.arch.name == NET and model(torch.zeros(1, 1, 8, 8)).shape == (1, 10)
    load_model(path, allow_builders=("userzoo.nets",))
    load_model(ModelPath(path, ["userzoo"]))  # a path that carries the permission


def test_standard_library_and_deepshrink_are_never_builders(tmp_path):
    marker = tmp_path / "owned"
    for name, allow in [("os:system", ("os",)), ("subprocess:run", ("subprocess",)), ("builtins:eval", ("builtins",)),
                        ("importlib:import_module", ("importlib",)), ("deepshrink.cli:main", ("deepshrink",)),
                        ("torch.hub:load", ("torch",)), ("numpy:load", ("numpy",))]:
        path = _saved(tmp_path, name, {"command": f"touch {marker}"} if name == "os:system" else {})
        with pytest.raises(UserError, match="refused") as info:
            load_model(path, allow_builders=allow)
        assert not isinstance(info.value, BuilderNotAllowed), name
    assert not marker.exists()


def test_a_function_re_exported_from_the_standard_library_is_refused():
    with pytest.raises(UserError, match="defined in 'posix'|defined in 'nt'"):
        resolve_builder("userzoo.reexport:system", ("userzoo",))


def test_a_package_not_allowed_is_not_even_imported(tmp_path):
    path = _saved(tmp_path, "sideeffect:build", {})
    for allow in ((), ("userzoo",), ("sideeffect_not",)):
        with pytest.raises(BuilderNotAllowed, match="sideeffect"):
            load_model(path, allow_builders=allow)
    assert "sideeffect" not in sys.modules and not (tmp_path / "imported").exists()


def test_bad_allow_lists_and_unimportable_builders_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not one string"):
        load_model(_saved(tmp_path), allow_builders="userzoo")
    with pytest.raises(UserError, match="not a package name"):
        load_model(tmp_path / "m.safetensors", allow_builders=("user zoo",))
    with pytest.raises(UserError, match="cannot import.*PYTHONPATH"):
        build_model(ArchSpec("userzoo.missing:net"), allow_builders=("userzoo",))
    with pytest.raises(UserError, match="has no callable 'nothing'"):
        build_model(ArchSpec("userzoo.nets:nothing"), allow_builders=("userzoo",))


def test_zoo_names_with_a_colon_are_not_read_as_builders(tmp_path):
    from safetensors.torch import load_file, save_file

    path = _saved(tmp_path)
    meta = read_info(path).to_dict()
    meta["arch"] = {"name": "os:system", "kwargs": {}}
    edited = tmp_path / "edited.safetensors"
    save_file(load_file(str(path)), str(edited), metadata={"deepshrink": json.dumps(meta)})
    with pytest.raises(UserError, match="must be a zoo name"):
        load_model(edited, allow_builders=("os",))


def test_torchvision_builder_when_it_imports():
    pytest.importorskip("torchvision")
    try:
        spec = make_spec("torchvision.models:resnet18", num_classes=10, in_channels=3, image_size=32)
    except UserError as exc:
        pytest.skip(f"torchvision does not load here: {exc}")
    assert spec.kwargs == {"num_classes": 10}
    assert build_model(spec)(torch.zeros(1, 3, 32, 32)).shape == (1, 10)
