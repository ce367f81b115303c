"""OpenVINO as a second engine: IR export (float and int8 from our QDQ model, its int8 weights
and scales kept), IR outputs against PyTorch and ONNX Runtime, ``bench --engine``; and one clear
error when ``openvino`` is not installed."""

import json
import sys

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from deepshrink.cli import main
from deepshrink.data import BatchLoader, load_dataset
from deepshrink.models import InputSpec, ModelInfo, build_model, load_model, make_spec, save_model
from deepshrink.quant.onnx_export import load_onnx

try:
    import openvino  # noqa: F401
    HAVE_OPENVINO = True
except ImportError:
    HAVE_OPENVINO = False
needs_openvino = pytest.mark.skipif(not HAVE_OPENVINO, reason="openvino is not installed (the openvino extra)")

BENCH_FIELDS = {"model", "engine", "engine_version", "batch", "threads", "latency_ms", "p10_ms", "p90_ms",
                "images_per_s", "repeats", "warmup"}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A trained digits-cnn model file, its int8 QDQ ONNX export, and test inputs."""
    root = tmp_path_factory.mktemp("openvino")
    assert main(["train", "--model", "digits-cnn", "--data", "synthetic", "--epochs", "2", "--batch-size", "32",
                 "--lr", "0.05", "--out", str(root / "run")]) == 0
    model_file = root / "run" / "model.safetensors"
    assert main(["export", str(model_file), "--format", "int8-onnx", "--out", str(root / "q.onnx"),
                 "--data", "synthetic", "--calibration-images", "128"]) == 0
    _, info = load_model(model_file)
    test_set = load_dataset("synthetic", "test")
    inputs = torch.cat([x for x, _ in BatchLoader(test_set, 64, mean=info.input.mean, std=info.input.std)])
    return model_file, root / "q.onnx", inputs


@pytest.fixture(scope="module")
def resnet20(tmp_path_factory):
    """A ResNet-20 at 16x16 (random weights, BatchNorm statistics from the synthetic images)
    and its int8 QDQ ONNX export."""
    root = tmp_path_factory.mktemp("resnet20")
    spec = make_spec("resnet20", num_classes=4, in_channels=3, image_size=16)
    info = ModelInfo(spec, InputSpec((3, 16, 16), (0.5,) * 3, (0.25,) * 3), dataset="synthetic")
    torch.manual_seed(0)
    model = build_model(spec).train()
    with torch.no_grad():
        for x, _ in BatchLoader(load_dataset("synthetic", "train"), 64, mean=info.input.mean, std=info.input.std):
            model(x)
    save_model(root / "r20.safetensors", model.eval(), info)
    assert main(["export", str(root / "r20.safetensors"), "--format", "int8-onnx", "--out", str(root / "q.onnx"),
                 "--data", "synthetic", "--calibration-images", "128"]) == 0
    return root / "r20.safetensors", root / "q.onnx"


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@needs_openvino
def test_float_ir_matches_pytorch(files, tmp_path, capsys):
    from deepshrink.quant.openvino import OpenVinoModel, ir_op_counts, read_info

    model_file, _, inputs = files
    code, out, _ = _run(capsys, "export", model_file, "--format", "openvino", "--out", tmp_path / "m.xml")
    assert code == 0 and "m.xml + m.bin" in out
    assert (tmp_path / "m.bin").stat().st_size > 0
    model, info = load_model(model_file)
    back = read_info(tmp_path / "m.xml")
    assert back.arch == info.arch and back.history[-1]["format"] == "openvino"
    assert "FakeQuantize" not in ir_op_counts(tmp_path / "m.xml")
    with torch.no_grad():
        expected = model.eval()(inputs)
    torch.testing.assert_close(OpenVinoModel(tmp_path / "m.xml", threads=1)(inputs), expected, rtol=1e-4, atol=1e-4)


@needs_openvino
def test_int8_ir_keeps_the_qdq_weights_and_scales_and_matches_onnxruntime(files, tmp_path, capsys):
    from deepshrink.quant.openvino import OpenVinoModel, ir_op_counts, read_info

    model_file, int8_onnx, inputs = files
    assert _run(capsys, "export", int8_onnx, "--format", "openvino", "--out", tmp_path / "q.xml")[0] == 0
    ops = ir_op_counts(tmp_path / "q.xml")
    assert ops["FakeQuantize"] >= 2
    onnx_weights = _onnx_int8_weights(int8_onnx)
    assert len(onnx_weights) == ops["Constant:i8"] >= 1
    assert _ir_int8_weights(tmp_path / "q.xml") == onnx_weights  # same int8 levels, same scales
    assert read_info(tmp_path / "q.xml").history[-1]["format"] == "int8-openvino"

    reference = load_onnx(int8_onnx, threads=1)[0](inputs)
    out = OpenVinoModel(tmp_path / "q.xml", threads=1)(inputs)
    assert (out.argmax(1) == reference.argmax(1)).float().mean() >= 0.95
    assert (out - reference).abs().mean() < 0.02 * reference.abs().max()


@needs_openvino
def test_resnet20_float_and_int8_ir(files, resnet20, tmp_path, capsys):
    """A deeper network (option-A shortcuts' pad/slice, 18 int8 convolutions): the float IR
    follows PyTorch, the int8 IR follows ONNX Runtime's int8 model."""
    from deepshrink.quant.openvino import OpenVinoModel, ir_op_counts

    model_file, int8_onnx = resnet20
    inputs = files[2]
    for source, out in ((model_file, "f.xml"), (int8_onnx, "q.xml")):
        assert _run(capsys, "export", source, "--format", "openvino", "--out", tmp_path / out)[0] == 0
    with torch.no_grad():
        expected = load_model(model_file)[0].eval()(inputs)
    torch.testing.assert_close(OpenVinoModel(tmp_path / "f.xml", threads=1)(inputs), expected, rtol=1e-4, atol=1e-4)
    ops = ir_op_counts(tmp_path / "q.xml")
    assert ops["Constant:i8"] == len(_onnx_int8_weights(int8_onnx)) >= 17 and ops["FakeQuantize"] >= 17
    assert _ir_int8_weights(tmp_path / "q.xml") == _onnx_int8_weights(int8_onnx)
    reference = load_onnx(int8_onnx, threads=1)[0](inputs)
    out = OpenVinoModel(tmp_path / "q.xml", threads=1)(inputs)
    assert (out.argmax(1) == reference.argmax(1)).float().mean() >= 0.9
    assert (out - reference).abs().mean() < 0.02 * reference.abs().max()
    # the two int8 engines differ by rounding only: far less than int8 differs from float
    assert (out - reference).abs().mean() < 0.5 * (expected - reference).abs().mean()


@needs_openvino
def test_int8_openvino_from_the_model_file_in_one_step(files, tmp_path, capsys):
    from deepshrink.quant.openvino import ir_op_counts, read_info

    model_file, *_ = files
    code, out, _ = _run(capsys, "export", model_file, "--format", "int8-openvino", "--out", tmp_path / "q.xml",
                        "--data", "synthetic", "--calibration-images", "64")
    assert code == 0 and "(int8-openvino)" in out
    assert ir_op_counts(tmp_path / "q.xml")["FakeQuantize"] >= 2
    record = read_info(tmp_path / "q.xml").history[-1]
    assert record["format"] == "int8-openvino" and record["openvino"]


@needs_openvino
@pytest.mark.parametrize("engine", ["openvino", "onnxruntime", "torch-optimized"])
def test_bench_engine_json_of_a_model_file(files, capsys, engine):
    model_file, *_ = files
    code, out, _ = _run(capsys, "bench", model_file, "--engine", engine, "--batch", "2", "--repeats", "3",
                        "--warmup", "1", "--threads", "1", "--json")
    assert code == 0
    result = json.loads(out)
    assert set(result) >= BENCH_FIELDS and result["engine"] == engine and result["threads"] == 1
    assert result["p10_ms"] <= result["latency_ms"] <= result["p90_ms"] and result["model"] == "digits-cnn"


@needs_openvino
def test_bench_openvino_json_of_int8_onnx_and_ir(files, tmp_path, capsys):
    _, int8_onnx, _ = files
    assert _run(capsys, "export", int8_onnx, "--format", "openvino", "--out", tmp_path / "q.xml")[0] == 0
    for path in (int8_onnx, tmp_path / "q.xml"):
        code, out, _ = _run(capsys, "bench", path, "--engine", "openvino", "--repeats", "3", "--warmup", "1",
                            "--threads", "1", "--json")
        assert code == 0
        result = json.loads(out)
        assert set(result) >= BENCH_FIELDS and result["engine"] == "openvino" and result["batch"] == 1
    code, out, _ = _run(capsys, "bench", tmp_path / "q.xml", "--repeats", "2", "--json")  # .xml: openvino by default
    assert code == 0 and json.loads(out)["engine"] == "openvino"


def test_wrong_engine_or_file_kind_is_one_line(files, tmp_path, capsys):
    model_file, int8_onnx, _ = files
    cases = [
        (["bench", int8_onnx, "--engine", "torch"], "runs in --engine onnxruntime or openvino"),
        (["bench", model_file, "--engine", "onnxruntime", "--optimize"], "--optimize"),
        (["bench", tmp_path / "m.xml", "--engine", "torch"], "only in --engine openvino"),
        (["export", int8_onnx, "--format", "int8-onnx", "--out", tmp_path / "x.onnx"], "only to --format openvino"),
    ]
    if HAVE_OPENVINO:
        cases.append((["export", model_file, "--format", "openvino", "--out", tmp_path / "m.bin"], ".xml"))
    for argv, message in cases:
        code, out, err = _run(capsys, *argv)
        assert code == 2 and message in err and err.count("\n") == 1 and out == "", argv


def test_missing_openvino_is_one_clear_error(files, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` raises ImportError
    model_file, int8_onnx, _ = files
    for argv in (["bench", model_file, "--engine", "openvino", "--repeats", "1"],
                 ["export", model_file, "--format", "openvino", "--out", tmp_path / "m.xml"],
                 ["export", model_file, "--format", "int8-openvino", "--out", tmp_path / "q.xml", "--data", "synthetic"],
                 ["export", int8_onnx, "--format", "openvino", "--out", tmp_path / "q.xml"]):
        code, out, err = _run(capsys, *argv)
        assert code == 2 and "pip install 'deepshrink[openvino]'" in err and err.count("\n") == 1, argv
    assert not list(tmp_path.iterdir())


def _onnx_int8_weights(path) -> list[tuple[bytes, bytes]]:
    """(int8 levels, float32 scales) of every int8 weight initializer of a QDQ ONNX file, sorted."""
    graph = onnx.load(str(path)).graph
    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    return sorted((values[n.input[0]].tobytes(), values[n.input[1]].astype(np.float32).tobytes())
                  for n in graph.node if n.op_type == "DequantizeLinear"
                  and values.get(n.input[0], np.zeros(0)).dtype == np.int8)


def _ir_int8_weights(path) -> list[tuple[bytes, bytes]]:
    """(int8 levels, float32 scales) of every int8 constant of an IR: Constant(i8) -> Convert ->
    Multiply by its scale, sorted."""
    from openvino import Core

    found = []
    for op in Core().read_model(str(path)).get_ops():
        source = op.input_value(0).get_node() if op.get_type_name() == "Convert" else None
        if source is None or source.get_type_name() != "Constant" or source.get_element_type().get_type_name() != "i8":
            continue
        (multiply,) = [target.get_node() for target in op.output(0).get_target_inputs()]
        scale = next(multiply.input_value(i).get_node() for i in range(2) if multiply.input_value(i).get_node() is not op)
        found.append((source.get_data().tobytes(), scale.get_data().astype(np.float32).ravel().tobytes()))
    return sorted(found)
