"""atheris harness for the .dsz reader (see fuzz/README.md)."""

import sys

import atheris

with atheris.instrument_imports():
    from deepshrink.codec.dsz import from_bytes
    from deepshrink.errors import UserError


def test_one_input(data: bytes) -> None:
    try:
        from_bytes(data, "fuzz.dsz")
    except UserError:
        pass


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
