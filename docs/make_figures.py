"""Make the figures in docs/figures (run: .venv/bin/python docs/make_figures.py).

* ``upsampling.png``: one Extended-CAM grid map (ResNet-18, random weights, layer4, 7²) brought
  to 224² by nearest, bilinear and Gaussian upsampling (widths from the layer's effective
  receptive field), with the high-frequency energy of each (discrete Laplacian energy over
  variance): bilinear leaves creases along the cell lines (Kim et al. 2020's cross/rhombus artefacts),
  Gaussian does not.
* ``erf_box_stack.png``: the ERF of 8 stacked linear 3×3 box convolutions and its Gaussian fit
  (closed form: σ = √(2·8/3) ≈ 2.31 px).
* ``transformers_2d.png``: the shapes benchmark's ViT (``vit2d``, trained here, seeded) and a
  small torchvision Swin trained the same way: layer methods at the ViT's default token layer
  and the Swin's last stage (channels last), and the three attention methods, on test images.
* ``unetr_slices.png`` is the lesions showcase's ``figures/slices.png`` with
  ``--network unetr`` (``camscope showcase lesions --network unetr --methods
  grad-cam,chefer,attention-rollout,saliency``).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
import torchvision
from torch import nn

import camscope

HERE = Path(__file__).resolve().parent / "figures"


def high_frequency(image: torch.Tensor) -> float:
    centred = image - image.mean()
    laplacian = (
        centred[1:-1, :-2]
        + centred[1:-1, 2:]
        + centred[:-2, 1:-1]
        + centred[2:, 1:-1]
        - 4 * centred[1:-1, 1:-1]
    )
    return float(laplacian.square().sum() / centred.square().sum())


def upsampling_figure() -> None:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    grid = torch.linspace(-1, 1, 224)
    yy, xx = torch.meshgrid(grid, grid, indexing="ij")
    blobs = torch.exp(-((xx - 0.3) ** 2 + (yy + 0.2) ** 2) / 0.05)
    blobs += torch.exp(-((xx + 0.4) ** 2 + (yy - 0.4) ** 2) / 0.02)
    image = (blobs + 0.1 * torch.randn(224, 224))[None, None].repeat(1, 3, 1, 1)
    e = camscope.explain(model, image, method="extended_cam", layer="layer4")
    panels = {
        "nearest": e.upsample(mode="nearest"),
        "bilinear": e.upsample(mode="linear"),
        "Gaussian (ERF widths)": e.upsample(),  # Extended-CAM's default: gaussian, sigma="erf"
    }
    sigma = camscope.receptive.cached_receptive_field(model, "layer4", (3, 224, 224)).sigma
    figure, axes = plt.subplots(1, 4, figsize=(15, 4))
    limit = float(e.maps.abs().max())
    axes[0].imshow(e.maps[0, 0], cmap="RdBu_r", vmin=-limit, vmax=limit)
    axes[0].set_title("Extended-CAM grid map (7×7), raw")
    for axis, (name, upsampled) in zip(axes[1:], panels.items(), strict=True):
        values = upsampled.maps[0, 0]
        bound = float(values.abs().max())
        axis.imshow(values, cmap="RdBu_r", vmin=-bound, vmax=bound)
        axis.set_title(f"{name}\nhigh-frequency energy {high_frequency(values):.2e}")
    for axis in axes:
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle(
        f"ResNet-18 (random weights), layer4 → 224²; ERF σ = ({sigma[0]:.1f}, {sigma[1]:.1f}) px"
    )
    figure.tight_layout(rect=(0, 0, 1, 0.9))
    figure.savefig(HERE / "upsampling.png", dpi=70)
    plt.close(figure)


def erf_figure() -> None:
    layers = []
    for _ in range(8):
        conv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
        nn.init.constant_(conv.weight, 1 / 9)
        layers.append(conv)
    stack = nn.Sequential(*layers).double()
    erf = camscope.effective_receptive_field(stack, "7", input_shape=(1, 41, 41))
    erf.plot(HERE / "erf_box_stack.png")


def _shapes_swin(images: torch.Tensor, labels: torch.Tensor, test, epochs: int) -> nn.Module:
    """A small torchvision Swin (window 4, two stages; a convolutional stem in place of the 4²
    patch embedding, as the shapes ViT has) trained on the shape images."""
    from torch.utils.data import TensorDataset
    from torchvision.models.swin_transformer import SwinTransformer

    from camscope.models.training import evaluate_accuracy, train_classifier

    torch.manual_seed(0)
    swin = SwinTransformer(
        patch_size=[4, 4],
        embed_dim=32,
        depths=[2, 2],
        num_heads=[2, 4],
        window_size=[4, 4],
        num_classes=4,
    )
    swin.features[0][0] = nn.Sequential(  # grey images, 64² → 16² cells of 32 channels
        nn.Conv2d(1, 16, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 2, stride=2)
    )
    train_classifier(
        swin, TensorDataset(images, labels), epochs=epochs, learning_rate=2e-3, progress=True
    )
    print(f"swin: test accuracy {evaluate_accuracy(swin, test):.3f}")
    return swin.eval()


def transformers_figure(cache: Path) -> None:
    from torch.utils.data import TensorDataset

    from camscope.evaluation import testbeds
    from camscope.render.overlays import background, show_map
    from camscope.simulate.shapes2d import shape_arrays

    vit = testbeds.shapes(
        cache,
        log=print,
        quiet=False,
        train_per_class=400,
        test_per_class=25,
        epochs=15,
        network="vit2d",
    )
    images, labels, _, _ = shape_arrays(400)
    test = TensorDataset(vit.inputs, vit.labels)
    swin = _shapes_swin(torch.from_numpy(images), torch.from_numpy(labels), test, epochs=15)
    picks = [0, 1, 2, 3]
    x, y = vit.inputs[picks], vit.labels[picks]
    columns = [
        ("ViT grad_cam", vit.model, "grad_cam"),
        ("ViT layer_cam", vit.model, "layer_cam"),
        ("ViT rollout", vit.model, "attention_rollout"),
        ("ViT chefer", vit.model, "chefer"),
        ("ViT legrad", vit.model, "legrad"),
        ("Swin grad_cam", swin, "grad_cam"),
        ("Swin layer_cam", swin, "layer_cam"),
    ]
    maps = {}
    for title, model, method in columns:
        e = camscope.explain(model, x, method=method, targets=y).upsample()
        maps[title] = (e.maps[:, 0].numpy(), camscope.get_method(method).signed, e.layer)
    figure, axes = plt.subplots(
        len(picks),
        len(columns) + 1,
        figsize=(1.7 * (len(columns) + 1), 1.8 * len(picks)),
        squeeze=False,
        constrained_layout=True,
    )
    for row in range(len(picks)):
        under = background(x[row].numpy())
        axes[row, 0].imshow(under, cmap="gray")
        axes[row, 0].set_xticks([])
        axes[row, 0].set_yticks([])
        for column, (title, (values, signed, layer)) in enumerate(maps.items(), start=1):
            show_map(axes[row, column], values[row], signed=signed, under=under)
            if row == 0:
                axes[row, column].set_title(f"{title}\n{layer}", fontsize=6)
    axes[0, 0].set_title("input", fontsize=7)
    figure.savefig(HERE / "transformers_2d.png", dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    import sys

    HERE.mkdir(parents=True, exist_ok=True)
    if "--transformers-only" not in sys.argv:
        upsampling_figure()
        erf_figure()
    transformers_figure(Path(__file__).resolve().parent.parent / "runs" / "figures-shapes")
    print(f"wrote {HERE}/upsampling.png, erf_box_stack.png, transformers_2d.png")
