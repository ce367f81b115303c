"""Property-based fuzzing of the two parsers that read user files: the recipe parser and the
.dsz reader. Whatever the input, the only outcomes are a parsed result or a UserError."""

from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepshrink.codec.dsz import from_bytes, to_bytes
from deepshrink.codec.model import encode_model
from deepshrink.errors import UserError
from deepshrink.models import InputSpec, ModelInfo, build_model, make_spec
from deepshrink.pipeline.recipe import parse_recipe

DEMO = (Path(__file__).resolve().parents[2] / "src/deepshrink/pipeline/recipes/digits-demo.yaml").read_text()
KEYS = ["name", "out", "data", "model", "stages", "train", "prune", "quantize", "encode", "export", "epochs",
        "lr", "bits", "method", "amount", "zoo", "file", "dir", "threads", "distill", "teacher", "format"]
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(KEYS))


def _yaml(value) -> str:
    return yaml.safe_dump(value, default_flow_style=False)


recipes = st.recursive(
    st.dictionaries(st.sampled_from(KEYS), SCALARS, max_size=5),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)),
    max_leaves=20)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recipes)
def test_generated_recipes_parse_or_fail_cleanly(value):
    try:
        parse_recipe(_yaml(value), source="fuzz.yaml")
    except UserError as exc:
        assert str(exc).startswith("fuzz.yaml")


@settings(max_examples=600, deadline=None)
@given(st.data())
def test_mutated_demo_recipe_parses_or_fails_cleanly(data):
    text = bytearray(DEMO.encode())
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(text) - 1))
        text[position] = data.draw(st.integers(0, 255))
    try:
        parse_recipe(text.decode("utf-8", errors="replace"), source="fuzz.yaml")
    except UserError:
        pass


@pytest.fixture(scope="module")
def dsz_bytes() -> bytes:
    spec = make_spec("lenet300", num_classes=10, in_channels=1, image_size=8)
    torch.manual_seed(0)
    model = build_model(spec)
    info = ModelInfo(spec, InputSpec((1, 8, 8), (0.3,), (0.4,)))
    return to_bytes(encode_model(model, info))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_random_splices_of_a_dsz_fail_cleanly(dsz_bytes, data):
    cut = data.draw(st.integers(0, len(dsz_bytes)))
    junk = data.draw(st.binary(max_size=64))
    try:
        from_bytes(dsz_bytes[:cut] + junk + dsz_bytes[cut + len(junk):], "fuzz.dsz")
    except UserError:
        pass
