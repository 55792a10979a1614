"""The ``cvmon`` command. Each command group lives in its own module and is added in :mod:`._root`.

Heavy imports (SQLAlchemy, FastAPI, scikit-learn, evidently) happen inside the commands that need
them, so ``cvmon --help`` answers at once.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``cvmon`` console script."""
    try:
        import click  # noqa: F401
    except ImportError:
        sys.stderr.write("the cvmon command needs the server extra: pip install 'cvmon[server]'\n")
        raise SystemExit(2) from None
    from monitor.server.cli._root import cli

    cli.main(args=argv, prog_name="cvmon")
