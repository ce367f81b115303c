"""A model from a builder outside the zoo (``--model PKG.MODULE:FUNCTION``) through every command,
in-process and under torchrun; model files naming builders not allowed are refused, exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from deepshrink.cli import main
from deepshrink.models import ArchSpec, InputSpec, ModelInfo, build_model, load_model, make_spec, save_model

BUILDERS = Path(__file__).resolve().parents[1] / "builders"
NET = "userzoo.nets:small_net"
ALLOW = ("--allow-builder", "userzoo")
DATA = ("--data", "digits", "--limit-train", "512", "--limit-test", "128", "--threads", "1")
EVAL = ("--data", "digits", "--limit", "128", "--threads", "1")
FIT = ("--batch-size", "64", "--lr", "0.05", "--no-augment")


@pytest.fixture(autouse=True)
def builders_on_path(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(BUILDERS))
    monkeypatch.setenv("DEEPSHRINK_TEST_MARKER", str(tmp_path / "imported"))


def _ok(capsys, *argv) -> str:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def _refused(capsys, *argv) -> str:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("builder")
    sys.path.insert(0, str(BUILDERS))
    try:
        code = main(["train", "--model", NET, "--model-opt", "width=8", *DATA, *FIT, "--epochs", "3",
                     "--out", str(out / "run")])
    finally:
        sys.path.remove(str(BUILDERS))
    assert code == 0
    return out / "run" / "model.safetensors"


def test_train_prune_quantize_encode_eval_of_the_dsz(trained, tmp_path, capsys):
    pruned, quantized, dsz = tmp_path / "p.safetensors", tmp_path / "q.safetensors", tmp_path / "q.dsz"
    _ok(capsys, "prune", trained, "--sparsity", "0.5", "--out", pruned, *ALLOW)
    _ok(capsys, "quantize", pruned, "--method", "kmeans", "--bits", "4", "--out", quantized, *ALLOW)
    _ok(capsys, "encode", quantized, "--out", dsz, *ALLOW)
    result = json.loads(_ok(capsys, "eval", dsz, *EVAL, "--json", *ALLOW))
    model, info = load_model(quantized, allow_builders=("userzoo",))
    assert info.arch.to_dict() == {"builder": NET, "kwargs": {"num_classes": 10, "in_channels": 1, "image_size": 8,
                                                              "width": 8}}
    assert [h["stage"] for h in info.history][:1] == ["train"]
    assert result["examples"] == 128 and result["nonzero_params"] < result["params"]
    decoded, _ = load_model(dsz, allow_builders=("userzoo",))
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(decoded(x), model(x))


def test_every_other_command_reads_builder_files(trained, tmp_path, capsys):
    small, dsz = tmp_path / "s.safetensors", tmp_path / "s.dsz"
    _ok(capsys, "prune", trained, "--structured", "--ratio", "0.5", "--out", small, *ALLOW)
    _ok(capsys, "encode", small, "--out", dsz, "--float16", *ALLOW)
    assert "MACs" in _ok(capsys, "report", small, "--costs", *ALLOW)
    assert "smaller" in _ok(capsys, "report", dsz, *ALLOW)
    _ok(capsys, "decode", dsz, "--out", tmp_path / "d.safetensors", *ALLOW)
    _ok(capsys, "bench", dsz, "--repeats", "3", *ALLOW)
    _ok(capsys, "export", small, "--format", "onnx", "--out", tmp_path / "s.onnx", *ALLOW) \
        if _onnx() else None
    _ok(capsys, "train", "--init", small, *DATA, *FIT, "--epochs", "1", "--out", tmp_path / "again", *ALLOW)
    _ok(capsys, "train", "--init", small, *DATA, *FIT, "--epochs", "1", "--out", tmp_path / "distilled",
        "--teacher", trained, *ALLOW)


def test_without_the_flag_every_command_names_the_builder_and_the_flag(trained, tmp_path, capsys):
    for argv in (("eval", trained, *EVAL), ("report", trained), ("encode", trained, "--out", tmp_path / "x.dsz"),
                 ("prune", trained, "--sparsity", "0.5", "--out", tmp_path / "x.safetensors"),
                 ("train", "--init", trained, *DATA, "--out", tmp_path / "x")):
        err = _refused(capsys, *argv)
        assert f"names the builder '{NET}'" in err and "--allow-builder userzoo" in err
        assert "allow_builders" not in err
    assert not (tmp_path / "x.dsz").exists() and not (tmp_path / "x.safetensors").exists()


def test_files_naming_the_standard_library_are_refused_with_no_side_effect(tmp_path, capsys):
    marker = tmp_path / "owned"
    spec = make_spec("digits-cnn", num_classes=10, in_channels=1, image_size=8)
    for builder, kwargs, allow in [("os:system", {"command": f"touch {marker}"}, "os"),
                                   ("subprocess:run", {"args": ["touch", str(marker)]}, "subprocess"),
                                   ("sideeffect:build", {}, "userzoo")]:
        path = tmp_path / f"{builder.replace(':', '_')}.safetensors"
        save_model(path, build_model(spec), ModelInfo(ArchSpec(builder, kwargs), InputSpec((1, 8, 8), (0.5,), (0.2,))))
        for argv in (("eval", path, *EVAL), ("report", path, "--costs"), ("eval", path, *EVAL, "--allow-builder", allow)):
            err = _refused(capsys, *argv)
            assert builder in err
    assert not marker.exists() and not (tmp_path / "imported").exists() and "sideeffect" not in sys.modules


def test_bad_builder_names_and_flags_exit_2_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--model", "userzoo.nets", *DATA, "--out", str(tmp_path / "r")])
    assert exc.value.code == 2 and "invalid choice: 'userzoo.nets' (choose a zoo model" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["train", "--model", "user zoo:net", *DATA, "--out", str(tmp_path / "r")])
    assert exc.value.code == 2 and "PKG.MODULE:FUNCTION" in capsys.readouterr().err
    err = _refused(capsys, "train", "--model", "userzoo.missing:net", *DATA, "--out", tmp_path / "r")
    assert "cannot import" in err
    err = _refused(capsys, "train", "--model", "os:getcwd", *DATA, "--out", tmp_path / "r")
    assert "standard library" in err
    err = _refused(capsys, "train", "--model", NET, "--model-opt", "depth=3", *DATA, "--out", tmp_path / "r")
    assert "has no option depth" in err
    err = _refused(capsys, "eval", tmp_path / "none.safetensors", *EVAL, "--allow-builder", "user zoo")
    assert "--allow-builder 'user zoo' is not a package name" in err


def test_recipe_with_a_builder_model(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"""name: builder
out: {tmp_path / 'run'}
data: {{name: digits, limit_train: 256, limit_test: 64}}
model: {{builder: {NET}, kwargs: {{width: 8}}}}
stages:
  - train: {{epochs: 1, batch_size: 64}}
  - structured: {{ratio: 0.25}}
  - quantize: {{bits: 4, method: kmeans}}
  - encode: {{}}
""")
    out = _ok(capsys, "run", recipe)
    assert "04-encode" in out and "decoded outputs bit-identical" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text(recipe.read_text().replace(NET, "userzoo.nets"))
    assert "model.builder" in _refused(capsys, "run", bad)


def test_torchrun_trains_and_prunes_a_builder_model(tmp_path, torchrun):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(BUILDERS), os.environ.get("PYTHONPATH", "")])}
    argv = ["-m", "deepshrink", "train", "--model", NET, "--model-opt", "width=8", *DATA, *FIT, "--epochs", "1",
            "--out", str(tmp_path / "ddp")]
    proc = _with_env(torchrun, env, *argv)
    assert proc.returncode == 0, proc.stderr[-2000:]
    model_file = tmp_path / "ddp" / "model.safetensors"
    proc = _with_env(torchrun, env, "-m", "deepshrink", "prune", model_file, "--sparsity", "0.5", "--epochs", "1",
                     *DATA, *FIT, "--out", tmp_path / "pruned.safetensors", *ALLOW)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("model written to") == 1
    _, info = load_model(tmp_path / "pruned.safetensors", allow_builders=("userzoo",))
    assert info.arch.name == NET


def _with_env(torchrun, env, *args) -> subprocess.CompletedProcess:
    """``torchrun(*args)`` with the environment ``env`` (the builders' package on PYTHONPATH)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        return torchrun(*args)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _onnx() -> bool:
    try:
        import onnx  # noqa: F401
    except ImportError:
        return False
    return True


def test_a_file_saved_without_info_is_refused_in_one_line(tmp_path, capsys):
    from deepshrink.codec import save_dsz
    from userzoo.nets import UserNet

    save_model(tmp_path / "mine.safetensors", UserNet())
    save_dsz(tmp_path / "mine.dsz", UserNet())
    for argv in (("eval", tmp_path / "mine.safetensors", *EVAL), ("report", tmp_path / "mine.dsz"),
                 ("bench", tmp_path / "mine.dsz"), ("encode", tmp_path / "mine.safetensors", "--out", tmp_path / "x.dsz")):
        assert "holds no architecture" in _refused(capsys, *argv)


def test_early_exits_on_a_builder_backbone_reload_with_the_permission(trained, tmp_path, capsys):
    out = tmp_path / "exits"
    _ok(capsys, "train", "--init", trained, "--early-exits", "stem", *DATA, *FIT, "--epochs", "1",
        "--out", out, *ALLOW)
    _ok(capsys, "eval", out / "model.safetensors", *EVAL, *ALLOW)
    err = _refused(capsys, "eval", out / "model.safetensors", *EVAL)
    assert "--allow-builder userzoo" in err
