"""``deepshrink encode`` / ``decode``: a pruned k-means model through the .dsz file and back."""

import pytest
import torch

from deepshrink.cli import main
from deepshrink.models import InputSpec, ModelInfo, build_model, load_model, make_spec, save_model
from deepshrink.prune import attach_masks
from deepshrink.quant import QuantConfig, quantize_


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    spec = make_spec("digits-cnn")
    torch.manual_seed(0)
    model = build_model(spec)
    attach_masks(model, {name: (torch.rand_like(getattr(model, name).weight) > 0.8).float()
                         for name in ("conv2", "conv3")})
    quantize_(model, QuantConfig(method="kmeans", bits=4))
    path = tmp_path_factory.mktemp("model") / "q.safetensors"
    save_model(path, model.eval(), ModelInfo(spec, InputSpec((1, 8, 8), (0.3,), (0.4,))))
    return path


def test_encode_then_decode_gives_the_same_outputs(model_file, tmp_path, capsys):
    assert main(["encode", str(model_file), "--out", str(tmp_path / "m.dsz")]) == 0
    out = capsys.readouterr().out
    assert "conv2.weight" in out and "x smaller" in out
    dsz_bytes = (tmp_path / "m.dsz").stat().st_size
    assert f".dsz {dsz_bytes:,} bytes" in out
    assert main(["decode", str(tmp_path / "m.dsz"), "--out", str(tmp_path / "back.safetensors")]) == 0
    original, _ = load_model(model_file)
    decoded, info = load_model(tmp_path / "back.safetensors")
    assert info.parametrizations == [] and info.history[-1]["stage"] == "encode"
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(decoded(x), original(x))


def test_float16_option_is_smaller(model_file, tmp_path, capsys):
    assert main(["encode", str(model_file), "--out", str(tmp_path / "a.dsz")]) == 0
    assert main(["encode", str(model_file), "--out", str(tmp_path / "b.dsz"), "--float16"]) == 0
    capsys.readouterr()
    assert (tmp_path / "b.dsz").stat().st_size < (tmp_path / "a.dsz").stat().st_size


def test_bn_affine_option_drops_the_running_statistics(model_file, tmp_path, capsys):
    assert main(["encode", str(model_file), "--out", str(tmp_path / "a.dsz")]) == 0
    assert main(["encode", str(model_file), "--out", str(tmp_path / "b.dsz"), "--float16", "--bn-affine"]) == 0
    assert main(["decode", str(tmp_path / "b.dsz"), "--out", str(tmp_path / "back.safetensors")]) == 0
    capsys.readouterr()
    assert (tmp_path / "b.dsz").stat().st_size < (tmp_path / "a.dsz").stat().st_size
    original, _ = load_model(model_file)
    decoded, info = load_model(tmp_path / "back.safetensors")
    assert info.history[-1]["bn_affine"] is True and not decoded.bn1.running_mean.any()
    x = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(decoded(x), original(x), rtol=1e-2, atol=1e-2)  # float16 rounding


def test_damaged_and_missing_files_exit_2_with_one_line(model_file, tmp_path, capsys):
    assert main(["encode", str(model_file), "--out", str(tmp_path / "m.dsz")]) == 0
    data = bytearray((tmp_path / "m.dsz").read_bytes())
    data[-5] ^= 0x10
    (tmp_path / "bad.dsz").write_bytes(bytes(data))
    capsys.readouterr()
    for argv in (["decode", str(tmp_path / "bad.dsz"), "--out", str(tmp_path / "x.safetensors")],
                 ["decode", str(tmp_path / "none.dsz"), "--out", str(tmp_path / "x.safetensors")],
                 ["encode", str(tmp_path / "none.safetensors"), "--out", str(tmp_path / "x.dsz")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("deepshrink: error: ") and err.count("\n") == 1
    assert not (tmp_path / "x.safetensors").exists() and not (tmp_path / "x.dsz").exists()


def test_eval_and_bench_read_a_dsz_file_directly(model_file, tmp_path, capsys):
    import json

    assert main(["encode", str(model_file), "--out", str(tmp_path / "m.dsz")]) == 0
    capsys.readouterr()
    results = []
    for path in (model_file, tmp_path / "m.dsz"):
        assert main(["eval", str(path), "--data", "digits", "--json"]) == 0
        results.append(json.loads(capsys.readouterr().out))
    assert results[0]["top1"] == results[1]["top1"] and results[0]["correct"] == results[1]["correct"]
    assert results[1]["loss"] == pytest.approx(results[0]["loss"], rel=1e-6)
    assert main(["bench", str(tmp_path / "m.dsz"), "--batch", "2", "--repeats", "2"]) == 0
