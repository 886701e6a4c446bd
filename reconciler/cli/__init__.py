"""The command line: one module per group of subcommands, assembled in ``main``.

The CLI reports, it does not crash: a ``ReconcilerError`` prints ``Type: message`` and
exits non-zero; a traceback means a bug.
"""

from __future__ import annotations

from reconciler.cli.main import main

__all__ = ["main"]
