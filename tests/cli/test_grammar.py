"""One command-line grammar for methods, targets and layers: comma lists, repeats, both
spellings of the option, kebab and snake case; keywords that stand alone; one layer where a
command explains one."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner

from camscope.cli.main import cli
from camscope.cli.params import layer_option, methods_option, targets_option


@click.command()
@methods_option("grad-cam")
@targets_option("predicted", "Targets.")
@layer_option("Layers.")
def _echo(methods, targets, layer):
    click.echo(json.dumps({"methods": methods, "targets": targets, "layer": layer}))


@click.command()
@layer_option("One layer.", several=False)
def _one(layer):
    click.echo(json.dumps(layer))


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ([], {"methods": ["grad_cam"], "targets": "predicted", "layer": None}),
        (
            ["--method", "grad-cam,layer_cam", "--methods", "Saliency", "--method", "grad_cam"],
            {
                "methods": ["grad_cam", "layer_cam", "saliency"],
                "targets": "predicted",
                "layer": None,
            },
        ),
        (
            ["--targets", "3", "--target", "0,4", "--targets", "3", "--layer", "a.b"],
            {"methods": ["grad_cam"], "targets": [3, 0, 4], "layer": "a.b"},
        ),
        (
            ["--targets", "all", "--layer", "x,y", "--layers", "z"],
            {"methods": ["grad_cam"], "targets": "all", "layer": ["x", "y", "z"]},
        ),
    ],
)
def test_lists_repeats_and_spellings_mean_the_same(arguments, expected):
    result = CliRunner().invoke(_echo, arguments)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == expected


@pytest.mark.parametrize(
    ("command", "arguments", "message"),
    [
        (_echo, ["--method", "grad-cam,no-such-method"], "unknown method 'no-such-method'"),
        (_echo, ["--targets", "all", "--target", "3"], "'all' stands alone"),
        (_one, ["--layer", "a,b"], "one layer at a time"),
    ],
)
def test_a_bad_list_is_one_usage_error(command, arguments, message):
    result = CliRunner().invoke(command, arguments)
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output


def test_every_command_that_takes_methods_takes_them_the_same_way():
    """Each command's method, target and layer options are the shared ones (both spellings)."""
    commands = {
        ("explain",): {"--method", "--methods", "--targets", "--target", "--layer", "--layers"},
        ("scan",): {"--method", "--methods", "--targets", "--target", "--layer", "--layers"},
        ("evaluate", "sanity"): {"--method", "--methods", "--layer", "--layers"},
        ("evaluate", "shapes"): {"--method", "--methods"},
        ("evaluate", "faces"): {"--method", "--methods", "--layer", "--layers"},
        ("erf",): {"--layer", "--layers"},
        ("showcase", "tomogram"): {"--method", "--methods"},
        ("showcase", "lesions"): {"--method", "--methods", "--layer", "--layers"},
    }
    for path, expected in commands.items():
        command = cli
        for name in path:
            command = command.commands[name]  # type: ignore[attr-defined]
        spellings = {option for p in command.params for option in getattr(p, "opts", [])}
        assert expected <= spellings, (path, expected - spellings)
        for parameter in command.params:
            if "--method" in getattr(parameter, "opts", []):
                assert parameter.multiple, path
