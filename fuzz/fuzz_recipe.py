"""atheris harness for the recipe parser (see fuzz/README.md)."""

import sys

import atheris

with atheris.instrument_imports():
    from deepshrink.errors import UserError
    from deepshrink.pipeline.recipe import parse_recipe


def test_one_input(data: bytes) -> None:
    try:
        parse_recipe(data.decode("utf-8", errors="replace"), source="fuzz.yaml")
    except UserError:
        pass


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
