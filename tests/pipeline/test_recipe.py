from pathlib import Path

import pytest

from deepshrink.errors import UserError
from deepshrink.prune import PruneConfig
from deepshrink.pipeline.recipe import EncodeSettings, load_recipe, parse_recipe
from deepshrink.quant import QuantConfig

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
PACKAGED_DEMO = Path(__file__).resolve().parents[2] / "src/deepshrink/pipeline/recipes/digits-demo.yaml"

HEAD = "name: t\nout: runs/t\ndata: {name: synthetic}\nmodel: {zoo: digits-cnn}\nstages:\n"


def error_of(text: str) -> str:
    with pytest.raises(UserError) as info:
        parse_recipe(text, source="r.yaml")
    return str(info.value)


def test_valid_recipe_builds_the_job_settings(tmp_path):
    text = ("name: t\nout: runs/t\ndata: {name: cifar10, dir: data}\n"
            "model: {pretrained: resnet20, checkpoint: ckpt/r20.th}\nstages:\n"
            "  - prune: {amount: 0.7, schedule: linear, epochs: 4, lr: 0.01, lr_schedule: constant}\n"
            "  - train: {epochs: 2, distill: {temperature: 2}}\n"
            "  - quantize: {method: kmeans, bits: 4, epochs: 1}\n"
            "  - encode: {float_dtype: float16}\n")
    recipe = parse_recipe(text, base_dir=tmp_path)
    prune, train, quantize, encode = recipe.stages
    assert prune.settings == PruneConfig(sparsity=0.7, schedule="linear")
    assert (prune.train.epochs, prune.train.lr, prune.train.schedule) == (4, 0.01, "constant")
    assert train.distill.teacher == "original" and train.distill.temperature == 2.0 and train.distill.alpha == 0.9
    assert quantize.settings == QuantConfig(method="kmeans", bits=4) and quantize.train.epochs == 1
    assert encode.settings == EncodeSettings("float16") and encode.train is None
    assert recipe.data.dir == tmp_path / "data" and recipe.model.path == tmp_path / "ckpt/r20.th"
    assert recipe.out == Path("runs/t")  # out stays relative to the current directory


def test_unknown_key_names_its_line_and_a_close_match():
    message = error_of(HEAD + "  - train: {epochs: 1}\n  - prune:\n      amount: 0.5\n      critrion: magnitude\n")
    assert message.startswith("r.yaml line 9: stages[1].prune.critrion: unknown key (did you mean 'criterion'?)")


def test_unknown_stage_and_top_level_key():
    assert "line 6: stages[0].trian: unknown stage (did you mean 'train'?)" in error_of(HEAD + "  - trian: {epochs: 1}\n")
    assert "line 1: nme: unknown key (did you mean 'name'?)" in error_of("nme: t\n")


def test_wrong_type_is_named_with_its_line():
    assert error_of(HEAD + "  - train:\n      epochs: three\n") == \
        "r.yaml line 7: stages[0].train.epochs: must be an integer, got 'three'"
    assert "line 2: out: must be a non-empty string, got 3" in error_of("name: t\nout: 3\n")


def test_out_of_range_values():
    message = error_of(HEAD + "  - train: {epochs: 1}\n  - quantize:\n      method: linear\n      bits: 9\n")
    assert message == "r.yaml line 9: stages[1].quantize.bits: must be one of 2..8 or 16 for linear quantization, got 9"
    assert "stages[1].quantize.bits: must be one of 2..8 for kmeans" in error_of(
        HEAD + "  - train: {epochs: 1}\n  - quantize: {method: kmeans, bits: 16}\n")
    assert "line 7: stages[1].prune.amount: must be in [0, 1), got 1.5" in error_of(
        HEAD + "  - train: {epochs: 1}\n  - prune: {amount: 1.5}\n")
    assert "stages[0].train.lr: must be a number > 0, got 0" in error_of(HEAD + "  - train: {epochs: 1, lr: 0}\n")
    assert "stages[0].train.distill.alpha: must be a number in [0, 1], got 2" in error_of(
        HEAD.replace("{zoo: digits-cnn}", "{file: m.safetensors}") + "  - train: {epochs: 1, distill: {alpha: 2}}\n")


def test_missing_required_keys():
    assert error_of("name: t\nout: o\ndata: {name: digits}\nmodel: {zoo: lenet5}\n") == \
        "r.yaml line 1: recipe: missing required key 'stages'"
    assert error_of(HEAD + "  - train: {epochs: 1}\n  - prune:\n      epochs: 2\n") == \
        "r.yaml line 7: stages[1].prune: missing required key 'amount'"
    assert "line 3: data: cifar10 needs 'dir'" in error_of(HEAD.replace("synthetic", "cifar10") + "  - train: {epochs: 1}\n")
    assert "line 4: model: give exactly one of zoo, builder, pretrained, file" in error_of(
        HEAD.replace("{zoo: digits-cnn}", "{zoo: lenet5, file: m}") + "  - train: {epochs: 1}\n")


def test_bad_yaml_and_duplicate_keys():
    assert error_of("name: t\nout: [runs\n").startswith("r.yaml line 3: not valid YAML:")
    assert error_of("name: t\nname: u\n") == "r.yaml line 2: name: duplicate key"
    assert error_of("") == "r.yaml: the recipe is empty"


def test_stage_order_is_checked():
    assert "stages[0]: a zoo model starts untrained: the first stage must be train, not prune" in error_of(
        HEAD + "  - prune: {amount: 0.5}\n")
    assert "stages[0].export: export must be the last stage" in error_of(
        HEAD.replace("{zoo: digits-cnn}", "{file: m}") + "  - export: {format: onnx}\n  - encode: {}\n")
    assert "already quantized" in error_of(
        HEAD + "  - train: {epochs: 1}\n  - quantize: {bits: 8}\n  - quantize: {bits: 4}\n")


def test_cross_field_errors_of_the_jobs_name_the_stage():
    assert "line 6: stages[0].structured: ratio (or target_macs_reduction) must be given" in error_of(
        HEAD.replace("{zoo: digits-cnn}", "{file: m}") + "  - structured: {criterion: l1}\n")
    gradual_without_epochs = "  - structured: {ratio: 0.5, schedule: linear}\n"
    assert ("line 6: stages[0].structured.schedule: 'linear' prunes while fine-tuning: give at least 1 epoch"
            in error_of(HEAD.replace("{zoo: digits-cnn}", "{file: m}") + gradual_without_epochs))


def test_structured_stage_takes_a_schedule():
    recipe = parse_recipe(HEAD.replace("{zoo: digits-cnn}", "{file: m}")
                          + "  - structured: {ratio: 0.5, schedule: agp, prune_epochs: 2, epochs: 3}\n")
    settings = recipe.stages[0].settings
    assert (settings.schedule, settings.prune_epochs, settings.ratio) == ("agp", 2, 0.5)
    stage = "  - structured: {ratio: 0.5, schedule: agp, prune_epochs: 4, epochs: 3}\n"
    assert "stages[0].structured.prune_epochs: must be at most the 3 fine-tuning epochs, got 4" in error_of(HEAD.replace("{zoo: digits-cnn}", "{file: m}") + stage)


def test_shipped_recipes_are_valid():
    names = sorted(p.name for p in RECIPES.glob("*.yaml"))
    assert names == ["deep-compression-resnet20-85.yaml", "deep-compression-resnet20-90.yaml",
                     "deep-compression-resnet20.yaml", "digits-demo.yaml",
                     "lenet300-digits.yaml", "lenet5-digits.yaml", "resnet20-25x.yaml",
                     "resnet56-half-macs.yaml"]
    for name in names:
        load_recipe(RECIPES / name)
    assert (RECIPES / "digits-demo.yaml").read_bytes() == PACKAGED_DEMO.read_bytes()


def test_unreadable_recipe_file(tmp_path):
    with pytest.raises(UserError, match="cannot read recipe"):
        load_recipe(tmp_path / "missing.yaml")


def test_non_printable_characters_are_a_user_error():
    # found by tests/fuzz: yaml's reader raised before the parser's error handling
    from deepshrink.errors import UserError
    from deepshrink.pipeline.recipe import parse_recipe

    with pytest.raises(UserError, match="not valid YAML"):
        parse_recipe("name: x\x00\n", source="r.yaml")


def test_activation_quantization_and_precision_keys():
    recipe = parse_recipe(HEAD + "  - train: {epochs: 1}\n  - quantize: {bits: 8, activation_bits: 6, "
                                 "activation_observer: ema, epochs: 1, precision: bf16}\n")
    quantize = recipe.stages[1]
    assert quantize.settings == QuantConfig(bits=8, activation_bits=6, activation_observer="ema")
    assert quantize.train.precision == "bf16"
    assert "activation_observer" in error_of(HEAD + "  - quantize: {bits: 8, activation_bits: 8, "
                                                    "activation_observer: median}\n")
    assert "precision" in error_of(HEAD + "  - train: {epochs: 1, precision: fp8}\n")


def test_distillation_in_compressing_stages_needs_fine_tuning_epochs():
    recipe = parse_recipe(HEAD + "  - train: {epochs: 1}\n  - prune: {amount: 0.5, epochs: 1, distill: {alpha: 0.7}}\n")
    assert recipe.stages[1].distill.alpha == 0.7
    assert "epochs > 0" in error_of(HEAD + "  - train: {epochs: 1}\n  - quantize: {bits: 4, distill: {}}\n")


def test_mixed_precision_keys_build_the_job_settings():
    from deepshrink.pipeline.quantize import MixedPrecision
    from deepshrink.quant.mixed import DEFAULT_BITS

    recipe = parse_recipe(HEAD + "  - train: {epochs: 1}\n"
                                 "  - quantize: {method: kmeans, mixed_budget_kb: 1.5, mixed_criterion: hessian,\n"
                                 "               mixed_bits: [4, 2, 4, 3], calibration_images: 64}\n")
    quantize = recipe.stages[1]
    assert quantize.mixed == MixedPrecision(1536, "hessian", (2, 3, 4))  # 1.5 KiB in bytes; sorted, once each
    assert quantize.settings == QuantConfig(method="kmeans", bits=4)  # the largest option, as the CLI does
    assert quantize.calibration_images == 64
    assert quantize.options["mixed_bits"] == (4, 2, 4, 3)  # as written, for stage.json
    defaults = parse_recipe(HEAD + "  - train: {epochs: 1}\n  - quantize: {mixed_budget_kb: 20}\n").stages[1]
    assert defaults.mixed == MixedPrecision(20 * 1024, "loss", DEFAULT_BITS)
    assert defaults.settings.bits == max(DEFAULT_BITS) and defaults.calibration_images is None
    one_width = parse_recipe(HEAD + "  - train: {epochs: 1}\n  - quantize: {bits: 6, activation_bits: 8, "
                                    "calibration_images: 32}\n").stages[1]
    assert one_width.mixed is None and one_width.calibration_images == 32 and one_width.settings.bits == 6


@pytest.mark.parametrize("stage,message", [
    ("{epochs: 1}", "line 7: stages[1].quantize: missing required key 'bits' (or 'mixed_budget_kb'"),
    ("{bits: 4, mixed_budget_kb: 10}", "line 7: stages[1].quantize.bits: excludes mixed_budget_kb"),
    ("{bits: 4, mixed_bits: [2, 4]}", "line 7: stages[1].quantize.mixed_bits: applies to mixed_budget_kb"),
    ("{bits: 4, mixed_criterion: loss}", "line 7: stages[1].quantize.mixed_criterion: applies to mixed_budget_kb"),
    ("{mixed_budget_kb: 0}", "line 7: stages[1].quantize.mixed_budget_kb: must be a number > 0, got 0"),
    ("{mixed_budget_kb: 0.0001}", "line 7: stages[1].quantize: the size budget must be positive, got 0 bytes"),
    ("{mixed_budget_kb: 10, mixed_criterion: los}", "mixed_criterion: must be one of loss, accuracy, hessian, "
                                                   "got 'los' (did you mean 'loss'?)"),
    ("{mixed_budget_kb: 10, mixed_bits: []}", "mixed_bits: must be a non-empty list of integers, got []"),
    ("{mixed_budget_kb: 10, mixed_bits: [4, true]}", "mixed_bits: must be a non-empty list of integers"),
    ("{mixed_budget_kb: 10, mixed_bits: [4, 9]}", "line 7: stages[1].quantize.mixed_bits: must hold bits "
                                                  "2..8 or 16 for linear quantization, got 9"),
    ("{method: kmeans, mixed_budget_kb: 10, mixed_bits: [16]}", "must hold bits 2..8 for kmeans quantization, got 16"),
    ("{bits: 8, calibration_images: 64}", "line 7: stages[1].quantize.calibration_images: applies to "
                                          "activation_bits and mixed_budget_kb"),
    ("{mixed_budget_kb: 10, calibration_images: 0}", "calibration_images: must be an integer >= 1, got 0"),
])
def test_mixed_precision_mistakes_name_their_line(stage, message):
    assert message in error_of(HEAD + "  - train: {epochs: 1}\n  - quantize: " + stage + "\n")


def test_mixed_keys_belong_to_quantize_only():
    assert "stages[1].prune.mixed_budget_kb: unknown key" in error_of(
        HEAD + "  - train: {epochs: 1}\n  - prune: {amount: 0.5, mixed_budget_kb: 10}\n")


def test_max_layer_sparsity_key_of_the_prune_stage():
    recipe = parse_recipe(HEAD + "  - train: {epochs: 1}\n  - prune: {amount: 0.8, scope: global, "
                                 "max_layer_sparsity: 0.95}\n")
    assert recipe.stages[1].settings == PruneConfig(sparsity=0.8, scope="global", max_layer_sparsity=0.95)
    assert "stages[0].prune.max_layer_sparsity: must be in (0, 1], got 0" in error_of(
        HEAD + "  - prune: {amount: 0.5, scope: global, max_layer_sparsity: 0}\n")
    assert "global scope only" in error_of(HEAD + "  - prune: {amount: 0.5, max_layer_sparsity: 0.9}\n")


def test_encode_stage_keys():
    recipe = parse_recipe(HEAD + "  - train: {epochs: 1}\n  - encode: {float_dtype: float16, bn_affine: true}\n")
    assert recipe.stages[1].settings == EncodeSettings(float_dtype="float16", bn_affine=True)
    assert "bn_affine: must be true or false" in error_of(HEAD + "  - train: {epochs: 1}\n  - encode: {bn_affine: 1}\n")
