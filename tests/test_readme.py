"""The README's first lines and the examples of the README and the docs stay true."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
METHODS = (ROOT / "docs" / "guide" / "methods.md").read_text()
TRANSFORMERS = (ROOT / "docs" / "guide" / "transformers.md").read_text()


def test_first_lines_are_the_two_commands_and_ci_runs_the_test_one():
    fence = re.search(r"```bash\n(.*?)```", README, re.S)
    assert fence and README.index(fence.group(0)) < 20
    commands = [line.split("#")[0].strip() for line in fence.group(1).strip().splitlines()]
    assert commands == [
        "./scripts/setup && .venv/bin/camscope reproduce respond-cam",
        "./scripts/setup && .venv/bin/python -m pytest",
    ]
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    assert commands[1] in ci


def test_usage_example_runs():
    code = re.search(r"## Use\n\n```python\n(.*?)```", README, re.S).group(1)
    namespace: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    explanation = namespace["e"]
    assert tuple(explanation.maps.shape) == (4, 23, 5, 5, 5)
    assert tuple(namespace["smooth"].maps.shape) == (4, 23, 40, 40, 40)


@pytest.mark.slow
def test_input_space_example_runs():
    first = re.search(r"## Use\n\n```python\n(.*?)```", README, re.S).group(1)
    second = re.search(
        r"## Input-space and perturbation methods\n.*?```python\n(.*?)```", METHODS, re.S
    ).group(1)
    namespace: dict = {}
    exec(first, namespace)
    exec(second, namespace)
    e = namespace["e"]
    assert e.maps.shape == (1, 23, 1, 40, 40, 40) and e.extras["completeness_gap"].shape == (1, 23)


@pytest.mark.slow
def test_transformer_example_runs():
    code = re.search(
        r"# Transformers and layer layouts\n.*?```python\n(.*?)```", TRANSFORMERS, re.S
    ).group(1)
    namespace: dict = {}
    exec(code, namespace)
    e, mid = namespace["e"], namespace["mid"]
    assert (e.layer, e.layout) == ("blocks.11.norm1", "tokens(14×14, prefix=1)")
    assert tuple(e.maps.shape) == (2, 5, 14, 14) and tuple(mid.maps.shape) == (2, 1, 14, 14)


def test_readme_is_an_entry_page_whose_links_exist():
    assert len(README.splitlines()) <= 300
    for target in re.findall(r"\]\(([^)#]+)\)", README):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), target


def test_readme_vit_example_runs():
    first = re.search(r"## Use\n\n```python\n(.*?)```", README, re.S).group(1)
    vit = re.search(r"In 2D, on a vision transformer.*?```python\n(.*?)```", README, re.S).group(1)
    namespace: dict = {}
    exec(first.split("model = ")[0], namespace)  # the imports
    exec(vit, namespace)
    g, r = namespace["g"], namespace["r"]
    assert (g.layer, g.layout) == ("blocks.11.norm1", "tokens(14×14, prefix=1)")
    assert tuple(g.maps.shape) == (2, 5, 14, 14) and tuple(r.maps.shape) == (2, 1, 14, 14)


def test_docs_monai_vit_example_runs():
    code = re.search(r"e\.g\.\n\n  ```python\n(.*?)  ```", TRANSFORMERS, re.S).group(1)
    code = "\n".join(line[2:] for line in code.splitlines())
    namespace: dict = {}
    exec("import torch, camscope\n" + code, namespace)
    assert tuple(namespace["e3"].maps.shape) == (1, 1, 4, 4, 4)
