"""``python -m deepshrink`` runs the command-line program."""

from deepshrink.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
