"""Reproduce Table 1 of the Respond-CAM paper (Zhao et al. 2018) on simulated subtomograms.

simulate (23 classes, 40³, missing wedge, SNR ∞ and 0.1) → train CNN-2 and a CNN-1 (or reuse the
trained models cached in ``OUT/models``) → explain every test subtomogram for all 23 classes with
Grad-CAM and Respond-CAM at ``maxpool2`` → sum-to-score (L1, Kendall τ; mean ± std) per model and
SNR, printed beside the paper's numbers → ``results.json``, the paper's Figures 3 and 4 as
pictures, and one self-contained HTML page.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset
from tqdm.auto import tqdm

import camscope
from camscope.engine.state import weights_digest
from camscope.errors import CamscopeError
from camscope.io import prepare_output_dir, write_json
from camscope.io.atomic import atomic_write
from camscope.metrics import sum_to_score
from camscope.models import create_model
from camscope.models.training import TrainingConfig, evaluate_accuracy, train_classifier
from camscope.render import data_uri, render_page
from camscope.render.text import text_table
from camscope.reproduce.figures import figure3, figure4, upsampled
from camscope.runs.identity import cpu_model
from camscope.simulate import SimulationConfig, Simulator, SubtomogramDataset
from camscope.simulate.subtomogram import parse_snr, simulate_arrays, snr_label

__all__ = [
    "PAPER_TABLE",
    "SCALES",
    "ModelSpec",
    "ReproduceConfig",
    "format_table",
    "reproduce_table",
]

#: Table 1 of the paper: (model, snr) → (L1 Grad, L1 Respond, KT Grad, KT Respond), mean and std.
PAPER_TABLE: dict[tuple[str, float], dict[str, tuple[float, float]]] = {
    ("CNN-1", math.inf): {"l1_grad": (15.344, 7.789), "l1_respond": (0.601, 0.187),
                          "kt_grad": (0.273, 0.350), "kt_respond": (0.981, 0.014)},
    ("CNN-2", math.inf): {"l1_grad": (8.117, 3.854), "l1_respond": (0.770, 0.366),
                          "kt_grad": (0.822, 0.097), "kt_respond": (0.976, 0.018)},
    ("CNN-1", 0.1): {"l1_grad": (21.142, 8.511), "l1_respond": (1.006, 0.721),
                     "kt_grad": (-0.116, 0.341), "kt_respond": (0.975, 0.024)},
    ("CNN-2", 0.1): {"l1_grad": (14.020, 5.232), "l1_respond": (0.542, 0.194),
                     "kt_grad": (0.458, 0.260), "kt_respond": (0.984, 0.013)},
}  # fmt: skip


#: Largest training set simulated up front and held in memory.
IN_MEMORY_BYTES = 4 * 2**30


@dataclass(frozen=True)
class ModelSpec:
    """One network to train: its label, registered architecture and options, and its budget.

    The rows of finite SNR start from the same network trained at the highest SNR of the run
    (``warm_start``, a curriculum: the network learns the shapes on clean data, then to find them
    in noise); ``noisy_epochs`` and ``noisy_learning_rate`` are their budget.
    """

    label: str
    architecture: str
    options: dict[str, Any] = field(default_factory=dict)
    per_class: int = 100
    epochs: int = 6
    batch_size: int = 32
    learning_rate: float = 2e-3
    noisy_epochs: int | None = None
    #: Peak rate on noisy data: from scratch, at 2e-3 CNN-2 never leaves chance at SNR 0.1 (its
    #: ReLUs die in the warm-up) and at 3e-4 it learns; from the warm start 1e-3 is measured best.
    noisy_learning_rate: float = 1e-3
    warm_start: bool = True
    #: Where the sum-to-score is measured (the paper: maxpool2, the last map before the FC
    #: layers), and the layers of Figure 4 (Respond-CAM at each).
    layer: str = "maxpool2"
    figure_layers: tuple[str, ...] = ("conv1", "conv2", "maxpool1", "conv3", "conv4", "maxpool2")


@dataclass(frozen=True)
class ReproduceConfig:
    """Everything that defines a reproduction run (every size can be set).

    ``precision`` and ``channels_last`` are training's speed settings
    (:class:`camscope.models.training.TrainingConfig`); ``"auto"`` trains in bfloat16 where the
    device computes it natively (CPUs with AVX-512 BF16/AMX, CUDA GPUs with bf16), else float32.
    Explanations are always computed in float32.
    """

    scale: str
    models: tuple[ModelSpec, ...]
    snrs: tuple[float, ...] = (math.inf, 0.1)
    test_per_class: int = 20
    size: int = 40
    seed: int = 0
    similarity: float = 0.0
    explain_batch: int = 32
    device: str = "cpu"
    precision: str = "auto"
    channels_last: bool = True

    def simulation(self) -> SimulationConfig:
        """The simulator's settings for this run."""
        return SimulationConfig(size=self.size, seed=self.seed, similarity=self.similarity)


VIT3D = ModelSpec(
    "ViT (vit3d, 8³ patches)",
    "vit3d",
    {"stem": True, "patch": 8, "num_classes": 23},
    per_class=300,
    epochs=10,
    noisy_epochs=4,
    learning_rate=1e-3,
    noisy_learning_rate=5e-4,
    layer="blocks.3.norm1",
    figure_layers=(
        "patch_embed",
        "blocks.0.norm1",
        "blocks.1.norm1",
        "blocks.2.norm1",
        "blocks.3.norm1",
    ),
)

SCALES: dict[str, ReproduceConfig] = {
    # ~13 minutes on 2 CPU cores: CNN-2, and CNN-1 with 8/16 channels on fewer samples.
    "default": ReproduceConfig(
        scale="default",
        models=(
            ModelSpec("CNN-2", "cnn2", {}, per_class=300, epochs=6, noisy_epochs=3),
            ModelSpec(
                "CNN-1 (8/16 channels)",
                "cnn1",
                {"widths": [8, 16]},
                per_class=150,
                epochs=4,
                noisy_epochs=2,
                noisy_learning_rate=5e-4,
            ),
        ),
    ),
    # Both networks in the paper's form (CNN-1: 32/64 channels, 33 M parameters): ~35 min here.
    "full": ReproduceConfig(
        scale="full",
        models=(
            ModelSpec("CNN-2", "cnn2", {}, per_class=300, epochs=6, noisy_epochs=3),
            ModelSpec(
                "CNN-1",
                "cnn1",
                {},
                per_class=200,
                epochs=4,
                noisy_epochs=2,
                noisy_learning_rate=5e-4,
            ),
        ),
    ),
    # The paper: 1000 per class split 4:1, both full networks, 10 epochs. Meant for a GPU.
    "paper": ReproduceConfig(
        scale="paper",
        models=(
            ModelSpec("CNN-2", "cnn2", {}, per_class=800, epochs=10, noisy_epochs=10),
            ModelSpec("CNN-1", "cnn1", {}, per_class=800, epochs=10, noisy_epochs=10),
        ),
        test_per_class=200,
    ),
    # CNN-2 beside a ViT (vit3d: conv stem, 5³ patches of 8³, width 64, 4 blocks) at the input
    # of its last block (its first norm), where the class token still reaches the patches.
    "transformer": ReproduceConfig(
        scale="transformer",
        models=(
            ModelSpec("CNN-2", "cnn2", {}, per_class=300, epochs=6, noisy_epochs=3),
            VIT3D,
        ),
    ),
    # Seconds: for tests of the pipeline itself.
    "smoke": ReproduceConfig(
        scale="smoke",
        models=(
            ModelSpec("CNN-2", "cnn2", {"input_size": 16}, per_class=3, epochs=1, batch_size=16),
        ),
        test_per_class=2,
        size=16,
    ),
}


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"auto"`` → ``"bfloat16"`` where ``device`` computes it natively, else ``"float32"``."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    if device.type == "cpu" and torch.backends.mkldnn.is_available():
        return "bfloat16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "float32"
    return "float32"


def _snr_value(snr: float) -> float | str:
    """As results.json stores it: a number, or ``"inf"`` (JSON has no infinity)."""
    return "inf" if math.isinf(snr) else float(snr)


def _paper_key(label: str) -> str:
    return "CNN-1" if label.startswith("CNN-1") else label


def format_table(rows: list[dict[str, Any]]) -> str:
    """Table 1 as text: each (model, SNR) row, with the paper's row beneath when it has one."""

    def cell(mean: float, std: float) -> str:
        return f"{mean:.3f} ± {std:.3f}"

    header = ["model", "SNR", "acc", "L1 Grad", "L1 Respond", "KT Grad", "KT Respond"]
    cells = []
    for row in rows:
        cells.append(
            [
                row["model"],
                str(row["snr"]),
                f"{row['accuracy']:.3f}",
                cell(row["l1_grad"], row["l1_grad_std"]),
                cell(row["l1_respond"], row["l1_respond_std"]),
                cell(row["kt_grad"], row["kt_grad_std"]),
                cell(row["kt_respond"], row["kt_respond_std"]),
            ]
        )
        snr = parse_snr(str(row["snr"]))  # results.json form: a number or "inf"
        paper = PAPER_TABLE.get((_paper_key(row["model"]), snr))
        if paper:
            cells.append(
                [
                    "  paper " + _paper_key(row["model"]),
                    "",
                    "",
                    *(
                        cell(*paper[key])
                        for key in ("l1_grad", "l1_respond", "kt_grad", "kt_respond")
                    ),
                ]
            )
    return text_table(header, cells)


def reproduce_table(
    out_dir: str | Path,
    config: ReproduceConfig,
    *,
    force: bool = False,
    progress: bool = True,
    log: Any = print,
) -> list[dict[str, Any]]:
    """Run the reproduction; see the module docstring. Returns the Table 1 rows.

    Trained models are cached in ``OUT/models`` (safetensors + JSON) and reused by a later run
    with the same settings; an interrupted training resumes from its last epoch.

    Raises:
        camscope.io.atomic.OutputError: results exist in ``out_dir`` and ``force`` is False.
    """
    folder = prepare_output_dir(out_dir, ["results.json", "report.html"], force=force)
    started = time.perf_counter()
    data = _simulate(config, progress=progress, log=log)
    rows: list[dict[str, Any]] = []
    figures: list[tuple[str, str, bytes]] = []
    device = torch.device(config.device)
    precision = resolve_precision(config.precision, device)
    log(
        f"training on {device} in {precision}" + (", channels-last" if config.channels_last else "")
    )
    for spec in config.models:
        clean: torch.nn.Module | None = None  # this network trained at the run's highest SNR
        for snr in sorted(config.snrs, reverse=True):
            model, stem, row = _train(
                folder, config, spec, snr, data, clean, precision, progress, log
            )
            if clean is None:
                clean = model
            kept = _sum_to_score(model, config, spec, snr, data, row, progress)
            rows.append(row)
            log(
                f"  test accuracy {row['accuracy']:.3f}; L1 Grad {row['l1_grad']:.3f}, "
                f"Respond {row['l1_respond']:.3f}; KT Grad {row['kt_grad']:.3f}, "
                f"Respond {row['kt_respond']:.3f}"
            )
            figures += _figures(model, config, spec, snr, data, kept, stem.name)
    elapsed = time.perf_counter() - started
    _write_results(folder, config, precision, rows, figures, elapsed, log)
    if not rows:
        raise CamscopeError("no model was trained: check the configuration")
    return rows


@dataclass
class _Splits:
    """The simulated training and test sets (the training set empty when it is simulated lazily,
    epoch by epoch)."""

    simulator: Simulator
    train_per_class: int
    in_memory: bool
    train_volumes: dict[float, np.ndarray]
    train_labels: np.ndarray
    test_volumes: dict[float, np.ndarray]
    test_labels: np.ndarray


def _simulate(config: ReproduceConfig, *, progress: bool, log: Any) -> _Splits:
    """Step 1: simulate the test set, and the training set when it fits in memory."""
    simulator = Simulator(config.simulation())
    train_per_class = max(spec.per_class for spec in config.models)
    log(
        f"simulating {config.simulation().n_classes} classes × {train_per_class} training + "
        f"{config.test_per_class} test subtomograms of {config.size}³ at SNR "
        f"{', '.join(snr_label(s) for s in config.snrs)}"
    )
    classes = simulator.config.n_classes
    # Hold the training set in memory when it fits the budget (the default scale: 1.2 GB);
    # otherwise (the paper's scale: ~10 GB) simulate it lazily, epoch by epoch.
    train_bytes = train_per_class * classes * config.size**3 * 4 * len(config.snrs)
    in_memory = train_bytes <= IN_MEMORY_BYTES
    train_volumes: dict[float, np.ndarray] = {}
    train_labels = np.zeros(0, dtype=np.int64)
    if in_memory:
        train_volumes, train_labels = simulate_arrays(
            simulator,
            train_per_class,
            config.snrs,
            progress=progress,
            description="simulating train",
        )
    else:
        log(f"  the training set ({train_bytes / 2**30:.1f} GiB) is simulated lazily each epoch")
    test_volumes, test_labels = simulate_arrays(
        simulator,
        config.test_per_class,
        config.snrs,
        offset=train_per_class,
        progress=progress,
        description="simulating test",
    )
    return _Splits(
        simulator,
        train_per_class,
        in_memory,
        train_volumes,
        train_labels,
        test_volumes,
        test_labels,
    )


def _train(
    folder: Path,
    config: ReproduceConfig,
    spec: ModelSpec,
    snr: float,
    data: _Splits,
    clean: torch.nn.Module | None,
    precision: str,
    progress: bool,
    log: Any,
) -> tuple[torch.nn.Module, Path, dict[str, Any]]:
    """Step 2: train (or reuse) one network at one SNR, warm-started from ``clean`` (the same
    network at the highest SNR) when the spec says so; its row of the table so far."""
    classes = data.simulator.config.n_classes
    tag = f"{spec.architecture}_{'-'.join(f'{v}' for v in spec.options.get('widths', []))}"
    stem = folder / "models" / f"{tag.strip('_')}_snr-{snr_label(snr)}"
    torch.manual_seed(config.seed)
    model = create_model(spec.architecture, **{**spec.options, "input_size": config.size})
    model.to(torch.device(config.device))
    identity: dict[str, Any] = {
        "simulation": asdict(replace(config.simulation())),
        "snr": snr_label(snr),
    }
    warm = clean is not None and spec.warm_start
    if warm:
        assert clean is not None
        model.load_state_dict(clean.state_dict())
        identity["warm_start"] = weights_digest(clean)
    count = spec.per_class * classes
    train: Dataset = (
        TensorDataset(
            torch.from_numpy(data.train_volumes[snr][:count]),
            torch.from_numpy(data.train_labels[:count]),
        )
        if data.in_memory
        else SubtomogramDataset(data.simulator, spec.per_class, snr=snr)
    )
    epochs = spec.epochs if clean is None else (spec.noisy_epochs or spec.epochs)
    training = TrainingConfig(
        epochs=epochs,
        batch_size=spec.batch_size,
        learning_rate=spec.learning_rate if clean is None else spec.noisy_learning_rate,
        seed=config.seed,
        precision=precision,  # type: ignore[arg-type]
        channels_last=config.channels_last,
    )
    warm_note = f", starting from the SNR {snr_label(max(config.snrs))} network" if warm else ""
    log(
        f"{spec.label}, SNR {snr_label(snr)}: {count} training subtomograms, {epochs} "
        f"epochs{warm_note} (cached in {stem.relative_to(folder)})"
    )
    result = train_classifier(
        model,
        train,
        config=training,
        progress=progress,
        checkpoint=stem,
        replace_mismatched=True,
        architecture=spec.architecture,
        options={**spec.options, "input_size": config.size},
        identity=identity,
        description=f"{spec.label} SNR {snr_label(snr)}",
    )
    if result.replaced_checkpoint:
        log("  the cached model had other settings: trained a new one in its place")
    elif result.resumed_from_epoch >= epochs:
        log("  reused the trained model")
    elif result.resumed_from_epoch:
        log(f"  resumed an interrupted training at epoch {result.resumed_from_epoch + 1}")
    test = TensorDataset(
        torch.from_numpy(data.test_volumes[snr]), torch.from_numpy(data.test_labels)
    )
    row: dict[str, Any] = {
        "model": spec.label,
        "layer": spec.layer,
        "snr": _snr_value(snr),
        "accuracy": evaluate_accuracy(model, test),
        "n_test": len(test),
        "n_train": count,
        "epochs": epochs,
        "warm_start": warm,
    }
    return model, stem, row


def _sum_to_score(
    model: torch.nn.Module,
    config: ReproduceConfig,
    spec: ModelSpec,
    snr: float,
    data: _Splits,
    row: dict[str, Any],
    progress: bool,
) -> dict[str, torch.Tensor]:
    """Step 3: Grad-CAM's and Respond-CAM's sum-to-score (L1, Kendall τ) over the test set, all
    classes, added to ``row``; the first batch's maps, for the figures."""
    l1: dict[str, list[torch.Tensor]] = {"grad": [], "respond": []}
    kt: dict[str, list[torch.Tensor]] = {"grad": [], "respond": []}
    inputs = torch.from_numpy(data.test_volumes[snr]).to(torch.device(config.device))
    keep: dict[str, torch.Tensor] = {}
    for start in tqdm(
        range(0, len(inputs), config.explain_batch),
        disable=not progress,
        desc="explaining",
        leave=False,
    ):
        batch = inputs[start : start + config.explain_batch]
        for method, key in (("grad_cam", "grad"), ("respond_cam", "respond")):
            e = camscope.explain(model, batch, method=method, layer=spec.layer, targets="all")
            check = sum_to_score(e.maps, e.scores)
            l1[key].append(check.l1.cpu())
            kt[key].append(check.kendall_tau.cpu())
            if start == 0:
                keep[key] = e.maps.cpu()
    for key in ("grad", "respond"):
        for name, values in (("l1", l1[key]), ("kt", kt[key])):
            joined = torch.cat(values).double()
            row[f"{name}_{key}"] = float(joined.mean())
            row[f"{name}_{key}_std"] = float(joined.std())
    return keep


def _figures(
    model: torch.nn.Module,
    config: ReproduceConfig,
    spec: ModelSpec,
    snr: float,
    data: _Splits,
    keep: dict[str, torch.Tensor],
    name: str,
) -> list[tuple[str, str, bytes]]:
    """Step 4: the paper's Figure 3 (Grad-CAM beside Respond-CAM on four classes) and Figure 4
    (Respond-CAM at every layer) for this network."""
    classes = data.simulator.config.n_classes
    test_labels = data.test_labels
    picks = [int(np.nonzero(test_labels == c)[0][0]) for c in (1, 5, 12, 20) if c < classes]
    picks = [p for p in picks if p < len(keep["grad"])][:4]
    if not picks:
        return []
    volumes = data.test_volumes[snr]
    true = torch.tensor([int(test_labels[p]) for p in picks])
    grad = upsampled(keep["grad"][picks, true][:, None], config.size)
    respond = upsampled(keep["respond"][picks, true][:, None], config.size)
    title = f"Figure 3: {spec.label}, SNR {snr_label(snr)}"
    third = figure3(volumes[picks, 0], test_labels[picks], grad, respond, title)
    sample = torch.from_numpy(volumes[picks[0] : picks[0] + 1]).to(torch.device(config.device))
    label = int(test_labels[picks[0]])
    per_layer = {
        layer: upsampled(
            camscope.explain(model, sample, method="respond_cam", layer=layer, targets=label).maps,
            config.size,
        )[0]
        for layer in spec.figure_layers
    }
    title4 = (
        "Figure 4: Respond-CAM at every layer before the FC layers, "
        f"{spec.label}, SNR {snr_label(snr)}"
    )
    fourth = figure4(volumes[picks[0], 0], per_layer, label, title4)
    return [(title, f"figure3_{name}.png", third), (title4, f"figure4_{name}.png", fourth)]


def _write_results(
    folder: Path,
    config: ReproduceConfig,
    precision: str,
    rows: list[dict[str, Any]],
    figures: list[tuple[str, str, bytes]],
    elapsed: float,
    log: Any,
) -> None:
    """Step 5: results.json (with the paper's rows beside), the figures and report.html."""
    write_json(
        folder / "results.json",
        {
            "camscope": camscope.__version__,
            "torch": torch.__version__,
            "scale": config.scale,
            "precision": precision,
            "cpu": cpu_model(),
            "config": {**asdict(config), "snrs": [snr_label(s) for s in config.snrs]},
            "seconds": elapsed,
            "rows": rows,
            "paper": [
                {
                    "model": m,
                    "snr": _snr_value(s),
                    **{k: v[0] for k, v in values.items()},
                    **{f"{k}_std": v[1] for k, v in values.items()},
                }
                for (m, s), values in PAPER_TABLE.items()
            ],
        },
    )
    table = format_table(rows)
    for _, name, png in figures:
        with atomic_write(folder / "figures" / name, mode="wb") as handle:
            handle.write(png)
    page = render_page(
        "figures.html.j2",
        title="Respond-CAM, Table 1 reproduced on simulated subtomograms",
        paragraphs=[
            "Sum-to-score of raw maps at each network's layer (the CNNs: maxpool2), all classes, "
            "over the test set (mean ± std). "
            "L1 = mean |Σ map − logit| over classes; KT = Kendall τ between the orders of map "
            "totals and logits. Paper rows from Zhao et al. 2018, Table 1."
        ],
        table=table,
        settings={},
        metrics=None,
        note=f"scale {config.scale}; {len(rows)} model × SNR rows; {elapsed / 60:.1f} min on "
        f"this machine; camscope {camscope.__version__}.",
        figures=[{"title": title, "src": data_uri(png)} for title, _, png in figures],
    )
    with atomic_write(folder / "report.html", mode="w") as handle:
        handle.write(page)
    log(table)
    log(f"wrote {folder / 'results.json'} and {folder / 'report.html'} ({elapsed / 60:.1f} min)")
