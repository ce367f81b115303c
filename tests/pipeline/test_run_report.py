import pytest

from deepshrink.pipeline.recipe import parse_recipe
from deepshrink.pipeline.run_report import format_stage_table, to_html, to_markdown, write_run_report
from deepshrink.pipeline.runner import run_recipe

HEAD = """name: report <test>
out: unused
data: {name: synthetic, limit_train: 96, limit_test: 64}
model: {zoo: digits-cnn}
threads: 1
stages:
  - train: {epochs: 1, batch_size: 32, lr: 0.05}
  - prune: {amount: 0.5, exclude_first_last: false}
"""
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def encoded_run(tmp_path_factory):
    recipe = parse_recipe(HEAD + "  - quantize: {method: kmeans, bits: 2}\n  - encode: {}\n")
    return run_recipe(recipe, out=tmp_path_factory.mktemp("run"), progress=False)


def test_report_holds_the_stage_table_and_the_codec_layer_table(encoded_run):
    out = encoded_run.out
    text = (out / "report.md").read_text()
    assert text.startswith("# report <test>\n")
    for record in encoded_run.stages:
        assert f"| {record.folder} | {100 * record.top1:.2f}% | {record.bytes:,} | {record.ratio:.2f}x |" in text
    dsz = (out / "04-encode/model.dsz").stat().st_size
    assert f"| total |  |  |  |  |  |  |  | {dsz:,} |" in text
    for layer in ("conv1.weight", "conv2.weight", "conv3.weight", "fc.weight", "other tensors (BatchNorm, biases)"):
        assert f"| {layer} |" in text
    assert f"-> .dsz {dsz:,} bytes: {encoded_run.stages[-1].ratio:.2f}x smaller" in text


def test_report_plots_are_png_files_next_to_it(encoded_run):
    out = encoded_run.out
    text, page = (out / "report.md").read_text(), (out / "report.html").read_text()
    for name in ("accuracy_vs_ratio.png", "sparsity.png", "weights.png", "training.png"):
        assert f"![{name}]({name})" in text and f'<img src="{name}"' in page
        assert (out / name).read_bytes().startswith(PNG)
    assert "<h1>report &lt;test&gt;</h1>" in page and page.count("<table>") == 3


def test_report_is_rebuilt_from_the_folder_alone(encoded_run):
    before = (encoded_run.out / "report.md").read_text()
    (encoded_run.out / "report.md").unlink()
    assert write_run_report(encoded_run.out, title="report <test>") == encoded_run.out / "report.md"
    assert (encoded_run.out / "report.md").read_text() == before


def test_without_encode_the_layer_table_is_the_sparsity_of_the_last_model(tmp_path):
    run = run_recipe(parse_recipe(HEAD.replace("epochs: 1,", "epochs: 0,")), out=tmp_path, progress=False)
    text = (tmp_path / "report.md").read_text()
    assert "## Layers of 02-prune/model.safetensors" in text
    assert "| conv2 | Conv2d | 4,608 | 2,304 | 50.0% |" in text  # 16*32*9 weights, half of them pruned
    assert not (tmp_path / "weights.png").exists() and "weights.png" not in text
    assert not (tmp_path / "training.png").exists()  # no epoch was trained
    assert run.stages[-1].details["sparsity"] == pytest.approx(0.5, abs=0.01)


def test_rendering_escapes_cells():
    blocks = [("h1", "a <b>"), ("table", ["x", "y"], [["1|2", "<i>"]]), ("p", "done")]
    assert to_markdown(blocks) == "# a <b>\n\n| x | y |\n|---|---|\n| 1\\|2 | <i> |\n\ndone\n"
    page = to_html(blocks, "t")
    assert "<h1>a &lt;b&gt;</h1>" in page and "<td>1|2</td><td>&lt;i&gt;</td>" in page


def test_stage_table_as_text(encoded_run):
    lines = format_stage_table(encoded_run.stages).splitlines()
    assert lines[0].split()[:4] == ["stage", "top-1", "bytes", "ratio"]
    assert [line.split()[0] for line in lines[1:]] == ["00-model", "01-train", "02-prune", "03-quantize", "04-encode"]
    assert lines[-1].split()[2] == f"{encoded_run.stages[-1].bytes:,}"


def test_accuracy_plot_shows_deliverables_only(encoded_run):
    from deepshrink.pipeline.run_report import deliverables

    dense, points = deliverables(encoded_run.stages)
    assert dense.folder == "01-train"  # the trained model, not the untrained 00-model
    assert [r.folder for r in points] == ["01-train", "04-encode"]  # no masked/quantized training files


def test_report_names_the_dataset_and_the_change_against_the_starting_model(encoded_run):
    from deepshrink.analysis.costs import model_costs
    from deepshrink.models import load_model

    out, stages = encoded_run.out, encoded_run.stages
    text = (out / "report.md").read_text()
    assert "Dataset: synthetic (inputs 3x16x16, 4 classes); top-1 is measured on its test split." in text
    model, info = load_model(out / stages[-1].evaluated)
    totals = model_costs(model, tuple(info.input.shape)).totals
    dense, final = stages[1], stages[-1]  # the trained model (01-train) and the .dsz
    assert "## Against the starting model" in text
    assert f"|  | start: {dense.folder} | final: {final.folder} | change |" in text
    points = 100 * (final.top1 - dense.top1)
    assert f"| test top-1 | {100 * dense.top1:.2f}% | {100 * final.top1:.2f}% | {points:+.2f} points |" in text
    assert f"| bytes on disk | {dense.bytes:,} | {final.bytes:,} | {dense.bytes / final.bytes:.2f}x smaller |" in text
    assert f"| MACs | {totals['macs']:,} | {totals['macs']:,} | same |" in text
    assert totals["sparse_macs"] < totals["macs"]
    assert f"| {final.folder} |" in text and f"{totals['macs']:,} ({totals['sparse_macs']:,})" in text
    assert "| stage | top-1 | bytes | ratio | MACs (non-zero) |" in text
    assert "16 levels + zero = 17 entries" in text  # the legend of the weight-bits column
