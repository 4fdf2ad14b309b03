"""The ``camscope`` command: one group, one module per command (no algorithms here).

Errors a user can cause become one line on stderr and exit code 2 (:func:`common.friendly`).
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

import click
from tqdm import tqdm

import camscope
from camscope.cli.evaluate import evaluate
from camscope.cli.explain import explain_command, features
from camscope.cli.inspect import erf, layers, methods
from camscope.cli.reproduce import demo, reproduce
from camscope.cli.sanity import sanity
from camscope.cli.scan import scan
from camscope.cli.showcase import showcase
from camscope.cli.simulate import simulate

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(camscope.__version__, prog_name="camscope")
def cli() -> None:
    """Explain what vision networks (CNNs and transformers) look at, in 2D images and 3D volumes."""
    warnings.showwarning = _one_line


def _one_line(message: Any, category: type[Warning], *_: Any, **__: Any) -> None:
    """A warning as one line on stderr, above any progress bar (not Python's two lines with the
    source line that raised it)."""
    text = str(message)
    if not text.startswith("camscope:"):
        text = f"warning ({category.__name__}): {text}"
    tqdm.write(text, file=sys.stderr)


evaluate.add_command(sanity)

for _command in (
    explain_command,
    scan,
    features,
    methods,
    layers,
    erf,
    demo,
    simulate,
    evaluate,
    reproduce,
    showcase,
):
    cli.add_command(_command)


def main() -> None:
    """Entry point of the ``camscope`` script."""
    cli(prog_name="camscope")


if __name__ == "__main__":
    main()
