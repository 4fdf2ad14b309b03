"""The built-in demo: train a small 3D network on toy volumes, explain it, check sum-to-score.

``camscope demo`` runs this. It needs no data: volumes are simulated, the network is trained on
the CPU in well under a minute (seeded), every test volume is explained for every class with four
CAM methods at the layer before the fully connected head, and the sum-to-score check of the
Respond-CAM paper is printed for each method. The maps are saved raw (``maps.npz``), with a
``summary.json`` and a picture of central slices (``slices.png``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import camscope
from camscope.io import prepare_output_dir, write_json, write_npz
from camscope.io.atomic import atomic_write
from camscope.metrics import sum_to_score
from camscope.models import SmallCNN
from camscope.models.training import train_classifier
from camscope.render.text import text_table
from camscope.simulate import TOY_CLASSES, ToyVolumes

__all__ = ["DEMO_METHODS", "DemoResult", "format_table", "run_demo"]

DEMO_METHODS = ("respond_cam", "grad_cam", "grad_cam_pp", "xgrad_cam")
OUTPUTS = ["maps.npz", "summary.json", "slices.png"]


@dataclass(frozen=True)
class DemoResult:
    """What the demo measured and where it wrote it."""

    accuracy: float
    rows: list[dict[str, float | str]]
    out_dir: Path


def format_table(rows: list[dict[str, float | str]]) -> str:
    """The sum-to-score table as text."""
    cells = [
        [
            str(row["method"]),
            f"{row['l1']:.4f} ± {row['l1_std']:.4f}",
            f"{row['kendall_tau']:.3f} ± {row['kendall_tau_std']:.3f}",
        ]
        for row in rows
    ]
    return text_table(["method", "L1 (mean ± std)", "Kendall τ (mean ± std)"], cells)


def _save_picture(path: Path, volumes: torch.Tensor, labels: torch.Tensor, maps: dict) -> None:
    from camscope.render.volumes import subplots

    picks = [int(torch.nonzero(labels == c)[0]) for c in range(len(TOY_CLASSES))]
    columns = ["volume", *[f"{m} (true class)" for m in ("respond_cam", "grad_cam")]]
    figure, axes = subplots(
        len(picks), len(columns), figsize=(3.2 * len(columns), 3.0 * len(picks))
    )
    size = volumes.shape[-3:]
    for row, index in enumerate(picks):
        label = int(labels[index])
        middle = size[0] // 2
        axes[row, 0].imshow(volumes[index, 0, middle].numpy(), cmap="gray")
        axes[row, 0].set_ylabel(TOY_CLASSES[label])
        for column, method in enumerate(("respond_cam", "grad_cam"), start=1):
            raw = maps[method][index : index + 1, label : label + 1]
            up = camscope.upsample(raw, size, mode="linear")[0, 0, middle].numpy()
            limit = float(np.abs(up).max()) or 1.0
            axes[row, column].imshow(volumes[index, 0, middle].numpy(), cmap="gray")
            shown = axes[row, column].imshow(up, cmap="RdBu_r", vmin=-limit, vmax=limit, alpha=0.6)
            figure.colorbar(shown, ax=axes[row, column], fraction=0.046)
    for column, title in enumerate(columns):
        axes[0, column].set_title(title)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle("central z-slice; signed raw maps, linearly upsampled (red +, blue −)")
    figure.tight_layout()
    with atomic_write(path, mode="wb") as handle:
        figure.savefig(handle, format="png", dpi=80)


def run_demo(
    out_dir: str | Path = "runs/demo",
    *,
    force: bool = False,
    seed: int = 0,
    per_class: int = 80,
    test_per_class: int = 20,
    epochs: int = 4,
    size: int = 24,
    progress: bool = True,
) -> DemoResult:
    """Train, explain, check and save; see the module docstring.

    Raises:
        camscope.io.atomic.OutputError: outputs exist in ``out_dir`` and ``force`` is False.
    """
    folder = prepare_output_dir(out_dir, OUTPUTS, force=force)
    torch.manual_seed(seed)
    model = SmallCNN(spatial_dims=3, num_classes=len(TOY_CLASSES), input_size=size)
    train = ToyVolumes(per_class, size=size, seed=seed)
    test = ToyVolumes(test_per_class, size=size, seed=seed, offset=per_class)
    result = train_classifier(
        model, train, epochs=epochs, seed=seed, evaluate_on=test, progress=progress
    )
    volumes = torch.stack([test[i][0] for i in range(len(test))])
    labels = torch.tensor([test[i][1] for i in range(len(test))])
    rows: list[dict[str, float | str]] = []
    maps: dict[str, torch.Tensor] = {}
    scores = None
    for method in DEMO_METHODS:
        explanation = camscope.explain(model, volumes, method=method, layer="pool2", targets="all")
        maps[method] = explanation.maps
        scores = explanation.scores
        rows.append(
            {"method": method, **sum_to_score(explanation.maps, explanation.scores).summary()}
        )
    assert scores is not None
    write_npz(
        folder / "maps.npz",
        labels=labels.numpy(),
        scores=scores.numpy(),
        **{method: value.numpy() for method, value in maps.items()},
    )
    write_json(
        folder / "summary.json",
        {
            "camscope": camscope.__version__,
            "torch": torch.__version__,
            "model": "tiny3d (SmallCNN, 3 classes)",
            "layer": "pool2",
            "classes": list(TOY_CLASSES),
            "input_size": [size] * 3,
            "n_train": len(train),
            "n_test": len(test),
            "accuracy": result.accuracy,
            "seed": seed,
            "rows": rows,
        },
    )
    _save_picture(folder / "slices.png", volumes, labels, maps)
    return DemoResult(accuracy=float(result.accuracy or 0.0), rows=rows, out_dir=folder)
