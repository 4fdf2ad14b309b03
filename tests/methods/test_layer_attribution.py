"""Layer conductance, internal influence and layer Integrated Gradients: equal to Captum's on the
same model, layer and path (2D and 3D), and by hand on a network whose layer is linear in the
input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import camscope
from camscope.models import create_model

captum = pytest.importorskip("captum.attr")


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_layer_conductance_and_internal_influence_equal_captum(spatial_dims):
    # Captum forms its path points and sums in another order: the two agree to ~2e-6 relative
    # (1e-9 absolute) here, not to float64's last bits.
    model = create_model(f"tiny{spatial_dims}d", num_classes=4).double().eval()
    x = torch.randn(2, 1, *[16] * spatial_dims, dtype=torch.float64)
    targets = [1, 3]
    conductance = camscope.explain(
        model, x, method="layer_conductance", layer="relu2", targets=targets, steps=12,
        batch_size=5,
    )  # fmt: skip
    reference = captum.LayerConductance(model, model.relu2).attribute(
        x, target=targets, n_steps=12, method="riemann_trapezoid"
    )
    torch.testing.assert_close(
        conductance.extras["attributions"][:, 0], reference, rtol=1e-5, atol=1e-8
    )
    torch.testing.assert_close(conductance.maps[:, 0], reference.sum(1), rtol=1e-5, atol=1e-8)
    influence = camscope.explain(
        model, x, method="internal_influence", layer="relu2", targets=targets, steps=12
    )
    reference = captum.InternalInfluence(model, model.relu2).attribute(
        x, target=targets, n_steps=12, method="riemann_right"
    )
    torch.testing.assert_close(
        influence.extras["attributions"][:, 0], reference, rtol=1e-5, atol=1e-8
    )
    integrated = camscope.explain(
        model, x, method="layer_integrated_gradients", layer="relu2", targets=targets, steps=12
    )
    reference = captum.LayerIntegratedGradients(model, model.relu2).attribute(
        x, target=targets, n_steps=12, method="riemann_right"
    )
    torch.testing.assert_close(
        integrated.extras["attributions"][:, 0], reference, rtol=1e-5, atol=1e-8
    )


def test_conductance_of_a_linear_head_by_hand():
    """Layer ``h = W x`` (linear, no ReLU before it), head ``y = v·h``: the gradient at ``h`` is
    ``v`` everywhere and ``h`` moves by ``W (x − x')``, so conductance is ``v ⊙ W(x − x')`` for
    any number of steps, and it adds up to ``y(x) − y(x')`` exactly."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.Flatten(), nn.Linear(3 * 25, 2)
    ).double().eval()  # fmt: skip
    x = torch.randn(2, 1, 5, 5, dtype=torch.float64)
    e = camscope.explain(
        model, x, method="layer_conductance", layer="0", targets="all", steps=3, baseline=0.2
    )
    with torch.no_grad():
        moved = model[0](x) - model[0](torch.full_like(x, 0.2))  # (B, 3, 5, 5)
    v = model[2].weight.view(2, 3, 5, 5)
    torch.testing.assert_close(e.extras["attributions"], v[None] * moved[:, None])
    torch.testing.assert_close(e.extras["channels"], (v[None] * moved[:, None]).flatten(3).sum(-1))
    assert e.extras["completeness_gap"].amax() < 1e-10
    integrated = camscope.explain(
        model, x, method="layer_integrated_gradients", layer="0", targets="all", steps=2,
        baseline=0.2,
    )  # fmt: skip
    torch.testing.assert_close(integrated.extras["attributions"], e.extras["attributions"])
    influence = camscope.explain(model, x, method="internal_influence", layer="0", targets="all")
    torch.testing.assert_close(influence.extras["attributions"], v[None].expand(2, -1, -1, -1, -1))


def test_layer_attribution_refuses_bad_steps():
    model = create_model("tiny2d", num_classes=4).eval()
    with pytest.raises(camscope.MethodError, match="steps"):
        camscope.explain(model, torch.randn(1, 1, 16, 16), method="layer_conductance", steps=0)
