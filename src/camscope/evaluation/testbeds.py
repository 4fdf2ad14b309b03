"""The built-in test beds (``camscope evaluate <name>``, ``camscope evaluate sanity --benchmark
<name>``): data with known ground truth, and the model to explain.

Each function takes ``(folder, *, log, quiet, **settings)`` (``folder``: where a model trained
here is cached) and returns a :class:`Testbed` ready for :func:`camscope.evaluation.evaluate`;
:data:`TESTBEDS` names them all and :func:`build_for_sanity` builds one at the sizes of the
sanity checks:

* :func:`subtomograms`: simulated subtomograms whose particle mask is known from the pose, with
  the reproduction's trained CNN-2;
* :func:`shapes`: 2D objects on textured backgrounds with known boxes, a small CNN trained here;
* :func:`chest`: a real chest radiograph (pydicom-data's ``RG1_UNCR.dcm``) with lesions pasted at
  known places, a lesion / no-lesion classifier trained here;
* :func:`faces`: a real trained CNN (MTCNN's ONet) on crops of scikit-image's astronaut photograph
  whose face box is known.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from camscope.errors import CamscopeError

__all__ = [
    "SANITY_SETTINGS",
    "TESTBEDS",
    "Testbed",
    "build_for_sanity",
    "chest",
    "faces",
    "shapes",
    "subtomograms",
]

Log = Callable[[str], None]


@dataclass
class Testbed:
    """Data with ground truth and the model to explain (a built-in benchmark)."""

    model: nn.Module
    inputs: torch.Tensor
    labels: torch.Tensor
    truth: torch.Tensor
    title: str
    extra: dict[str, Any] = field(default_factory=dict)
    layer: str | None = None
    batch_size: int = 16
    #: The same architecture trained on permuted labels (data randomisation test), if built.
    control: nn.Module | None = None


def subtomograms(
    folder: Path,
    *,
    log: Log,
    quiet: bool,
    model_path: str | None,
    snr: float,
    per_class: int,
    offset: int,
    control: bool = False,
) -> Testbed:
    """Test subtomograms (past the reproduction's training samples) and the trained CNN-2; with
    ``control``, the same network trained on permuted labels until it fits them (cached in
    ``folder/model``; see :func:`_permuted_subtomogram_model`)."""
    from camscope.io.checkpoints import load_model
    from camscope.reproduce import trained_model
    from camscope.simulate import SimulationConfig, Simulator
    from camscope.simulate.subtomogram import snr_label

    label = snr_label(snr)
    path = trained_model(model_path, snr)
    model, saved = load_model(path)
    size = int(saved.options.get("input_size", 40))
    simulator = Simulator(SimulationConfig(size=size, similarity=0.0))
    classes = simulator.config.n_classes
    items = [(item % classes, offset + item // classes) for item in range(per_class * classes)]
    inputs = torch.from_numpy(
        np.stack([simulator.sample(c, i, (snr,))[snr] for c, i in items])[:, None]
    )
    labels = torch.tensor([c for c, _ in items])
    masks = torch.from_numpy(np.stack([simulator.particle_mask(c, i) for c, i in items]))
    extra: dict[str, Any] = {"model": str(path), "snr": label, "n": len(items)}
    permuted_model = None
    if control:
        permuted_model, extra["control"] = _permuted_subtomogram_model(
            folder, saved, snr, log=log, quiet=quiet
        )
    return Testbed(
        model,
        inputs,
        labels,
        masks,
        title=f"{len(items)} subtomograms, SNR {label}",
        extra=extra,
        control=permuted_model,
    )


#: The subtomogram control's training set and length: small enough to be memorised. On the
#: reproduction's 6,900 subtomograms and 6 epochs, CNN-2's loss stays at ln 23 (it learns
#: nothing, which is a weaker control than a network that fits its permuted labels); on 230 it
#: fits them all within about 35 epochs (2–3 min here).
CONTROL_PER_CLASS = 10
CONTROL_EPOCHS = 60


def _permuted_subtomogram_model(
    folder: Path, saved: Any, snr: float, *, log: Log, quiet: bool
) -> tuple[nn.Module, dict[str, Any]]:
    """The data randomisation control, as Adebayo et al. built it: the saved model's
    architecture trained from scratch, with its own settings except the length, until it fits
    permuted labels (seeded) of :data:`CONTROL_PER_CLASS` training subtomograms per class
    (simulated with the checkpoint's settings). Returns the model and a record of its fit."""
    from dataclasses import replace

    from torch.utils.data import TensorDataset

    from camscope.models import create_model
    from camscope.models.training import TrainingConfig, evaluate_accuracy, train_classifier
    from camscope.simulate import SimulationConfig, Simulator
    from camscope.simulate.subtomogram import simulate_arrays

    identity = saved.metadata.get("identity") or {}
    if "simulation" not in identity or "training" not in identity:
        raise CamscopeError(
            "the data randomisation test needs a model trained by `camscope reproduce "
            "respond-cam` (its checkpoint says how it was trained); this one does not say"
        )
    simulation = SimulationConfig.from_record(identity["simulation"])
    training = replace(TrainingConfig(**identity["training"]), epochs=CONTROL_EPOCHS)
    simulator = Simulator(simulation)
    log(f"permuted labels: simulating {CONTROL_PER_CLASS} training subtomograms per class")
    volumes, labels = simulate_arrays(simulator, CONTROL_PER_CLASS, (snr,), progress=not quiet)
    permuted = np.random.default_rng(0).permutation(labels)
    data = TensorDataset(torch.from_numpy(volumes[snr]), torch.from_numpy(permuted))
    torch.manual_seed(training.seed)
    model = create_model(saved.architecture, **saved.options)
    train_classifier(
        model,
        data,
        config=training,
        progress=not quiet,
        checkpoint=folder / "model" / f"{saved.architecture}-permuted-labels",
        architecture=saved.architecture,
        options=saved.options,
        replace_mismatched=True,
        identity={  # the original's data settings; its own training settings and size
            **{k: v for k, v in identity.items() if k not in ("training", "n_train")},
            "labels": "permuted, seed 0",
        },
        description="permuted labels",
    )
    fit = evaluate_accuracy(model, data)
    log(f"permuted labels: the control fits {fit:.0%} of its {len(permuted)} training labels")
    record = {"n_train": len(permuted), "epochs": training.epochs, "train_accuracy": fit}
    return model.eval(), record


def shapes(
    folder: Path,
    *,
    log: Log,
    quiet: bool,
    train_per_class: int,
    test_per_class: int,
    epochs: int,
    control: bool = False,
    network: str = "tiny2d",
) -> Testbed:
    """2D shapes with boxes; a small network (``network``: ``"tiny2d"``, a CNN, or ``"vit2d"``,
    a ViT) trained (or reused) in ``folder/model``; with ``control``, a second one trained on
    the same images with permuted labels (seeded)."""
    from camscope.models.training import train_small_2d
    from camscope.simulate.shapes2d import SHAPE_CLASSES, shape_arrays

    images, labels, _, _ = shape_arrays(train_per_class)
    test_images, test_labels, _, boxes = shape_arrays(test_per_class, offset=train_per_class)

    def train(name: str, truth: Any, data: dict[str, Any], say: Log) -> tuple[nn.Module, float]:
        return train_small_2d(
            folder / "model" / name,
            (images, truth),
            (test_images, test_labels),
            classes=len(SHAPE_CLASSES),
            epochs=epochs,
            progress=not quiet,
            data={"benchmark": "shapes2d", "version": 1, **data},
            log=say,
            architecture=network,
        )

    model, accuracy = train(network, labels, {}, log)
    extra: dict[str, Any] = {
        "benchmark": "shapes2d",
        "network": network,
        "accuracy": accuracy,
        "n": len(test_images),
    }
    permuted_model = None
    if control:  # the same images, labels permuted (seeded): the data randomisation test
        from torch.utils.data import TensorDataset

        from camscope.models.training import evaluate_accuracy

        permuted = np.random.default_rng(0).permutation(labels)
        permuted_model, _ = train(
            f"{network}-permuted-labels",
            permuted,
            {"labels": "permuted, seed 0"},
            lambda text: log(f"permuted labels: {text}"),
        )
        fit = evaluate_accuracy(
            permuted_model, TensorDataset(torch.from_numpy(images), torch.from_numpy(permuted))
        )
        log(f"permuted labels: the control fits {fit:.0%} of its {len(permuted)} training labels")
        extra["control"] = {"n_train": len(permuted), "epochs": epochs, "train_accuracy": fit}
    return Testbed(
        model,
        torch.from_numpy(test_images),
        torch.from_numpy(test_labels),
        torch.from_numpy(boxes),
        title=f"{len(test_images)} shape images",
        extra=extra,
        control=permuted_model,
    )


def chest(
    folder: Path, *, log: Log, quiet: bool, train_count: int, test_count: int, epochs: int
) -> Testbed:
    """Chest radiograph crops with pasted lesions; scored on the crops that have one."""
    from camscope.datasets.chest import LESION_CONTRAST, lesion_crops
    from camscope.models.training import train_small_2d

    images, labels, _ = lesion_crops(train_count)
    test_images, test_labels, boxes = lesion_crops(test_count, offset=train_count)
    model, accuracy = train_small_2d(
        folder / "model" / "tiny2d",
        (images, labels),
        (test_images, test_labels),
        classes=2,
        epochs=epochs,
        progress=not quiet,
        data={"benchmark": "chest-RG1_UNCR", "contrast": list(LESION_CONTRAST), "version": 1},
        log=log,
    )
    with_lesion = test_labels == 1
    count = int(with_lesion.sum())
    return Testbed(
        model,
        torch.from_numpy(test_images[with_lesion]),
        torch.from_numpy(test_labels[with_lesion]),
        torch.from_numpy(boxes[with_lesion]),
        title=f"{count} chest crops with a lesion",
        extra={"benchmark": "chest-RG1_UNCR", "accuracy": accuracy, "n": count},
    )


def faces(folder: Path, *, log: Log, quiet: bool, count: int, layer: str | None) -> Testbed:
    """MTCNN's ONet on astronaut face crops (class 1: face)."""
    from camscope.datasets.faces import FaceClassifier, astronaut_face_crops

    model = FaceClassifier()
    inputs, boxes = astronaut_face_crops(count)
    with torch.no_grad():
        face = torch.softmax(model(inputs), dim=1)[:, 1]
    log(
        f"ONet face probability on the {count} crops: min {float(face.min()):.3f}, "
        f"mean {float(face.mean()):.3f}"
    )
    return Testbed(
        model,
        inputs,
        torch.ones(count, dtype=torch.long),
        boxes,
        title=f"ONet, {count} astronaut face crops",
        extra={"benchmark": "onet-astronaut", "n": count},
        layer=layer or "onet.prelu4",  # the documented numbers: after the activation
        batch_size=count,
    )


#: Every built-in test bed by name.
TESTBEDS: dict[str, Callable[..., Testbed]] = {
    "subtomograms": subtomograms,
    "shapes": shapes,
    "chest": chest,
    "faces": faces,
}

#: The sizes the sanity checks build each test bed at (``camscope evaluate sanity --benchmark``);
#: the shapes and subtomograms beds also train their permuted-label control.
SANITY_SETTINGS: dict[str, dict[str, Any]] = {
    "subtomograms": {
        "model_path": None,
        "snr": float("inf"),
        "per_class": 1,
        "offset": 1000,
        "control": True,
    },
    "shapes": {"train_per_class": 400, "test_per_class": 25, "control": True},
    "chest": {"train_count": 800, "test_count": 120, "epochs": 8},
    "faces": {},
}


def build_for_sanity(name: str, folder: Path, *, log: Log, quiet: bool, **options: Any) -> Testbed:
    """The test bed ``name`` at the sanity checks' sizes (:data:`SANITY_SETTINGS`); ``options``
    (e.g. ``epochs``, ``network``, ``count``, ``layer``) go to the beds that take them and are
    ignored by the others."""
    import inspect

    if name not in TESTBEDS:
        raise CamscopeError(f"no built-in benchmark {name!r}; choose one of {', '.join(TESTBEDS)}")
    build = TESTBEDS[name]
    accepted = inspect.signature(build).parameters
    fixed = SANITY_SETTINGS[name]
    chosen = {k: v for k, v in options.items() if k in accepted and k not in fixed}
    return build(folder, log=log, quiet=quiet, **fixed, **chosen)
