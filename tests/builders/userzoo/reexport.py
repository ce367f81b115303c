"""A module of an allowed package that re-exports a standard-library function."""

from os import system  # noqa: F401
