"""Loading models from what users have: TorchScript, torch.export, state dicts; pickles refused."""

from __future__ import annotations

import warnings

import pytest
import torch
from safetensors.torch import save_file

from camscope import ModelError
from camscope.io.checkpoints import CheckpointError, save_model
from camscope.io.models import build_architecture, load_model_spec
from camscope.models import create_model

X = torch.randn(2, 1, 16, 16)


def _reference():
    torch.manual_seed(1)
    return create_model("tiny2d", num_classes=3, input_size=16).eval()


def _same(model, reference):
    with torch.no_grad():
        torch.testing.assert_close(model(X), reference(X))


def test_builtin_name_and_camscope_saved_model(tmp_path):
    model, record = load_model_spec("tiny2d")
    assert record["weights"].startswith("random")
    reference = _reference()
    options = {"num_classes": 3, "input_size": 16}
    save_model(tmp_path / "net", reference, architecture="tiny2d", options=options)
    for spec in ("net.json", "net.safetensors"):
        model, record = load_model_spec(tmp_path / spec)
        _same(model, reference)
        assert record["format"] == "camscope"


def test_torchscript_and_export(tmp_path):
    reference = _reference()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated
        torch.jit.script(reference).save(str(tmp_path / "net.pt"))
    model, record = load_model_spec(tmp_path / "net.pt")
    assert record["format"] == "torchscript"
    _same(model, reference)
    program = torch.export.export(reference, (X,))
    torch.export.save(program, str(tmp_path / "net.pt2"))
    model, record = load_model_spec(tmp_path / "net.pt2")
    assert record["format"] == "torch.export"
    _same(model, reference)


def test_state_dicts_with_an_architecture(tmp_path):
    reference = _reference()
    save_file(reference.state_dict(), str(tmp_path / "w.safetensors"))
    torch.save(reference.state_dict(), tmp_path / "w.pth")
    torch.save({"state_dict": reference.state_dict(), "epoch": 3}, tmp_path / "ckpt.pth")
    options = {"num_classes": 3, "input_size": 16}
    for name in ("w.safetensors", "w.pth", "ckpt.pth"):
        model, record = load_model_spec(tmp_path / name, architecture="tiny2d", options=options)
        _same(model, reference)
        assert record["architecture"] == "tiny2d"
    with pytest.raises(ModelError, match="weights only"):
        load_model_spec(tmp_path / "w.safetensors")
    with pytest.raises(ModelError, match=r"state dict .*--architecture on the command line"):
        load_model_spec(tmp_path / "w.pth")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_model_spec(
            tmp_path / "w.pth", architecture="tiny2d", options={"num_classes": 5, "input_size": 16}
        )


def test_torchvision_and_module_callable_architectures(tmp_path):
    torch.manual_seed(0)
    net = build_architecture("torchvision:resnet18", {"num_classes": 3})
    save_file(net.state_dict(), str(tmp_path / "r.safetensors"))
    model, _ = load_model_spec(
        tmp_path / "r.safetensors", architecture="torchvision:resnet18", options={"num_classes": 3}
    )
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), net.eval()(x))
    built = build_architecture("camscope.models:create_model", {"name": "tiny3d", "num_classes": 2})
    assert isinstance(built, torch.nn.Module)
    with pytest.raises(ModelError, match="cannot import"):
        build_architecture("no_such_module:thing")
    with pytest.raises(ModelError, match="not a torch Module"):
        build_architecture("builtins:dict", {"x": 4})
    with pytest.raises(ModelError, match="unknown architecture"):
        build_architecture("resnet9000")


def test_whole_pickled_model_is_refused_unless_trusted(tmp_path):
    reference = _reference()
    torch.save(reference, tmp_path / "whole.pt")
    with pytest.raises(CheckpointError, match=r"could run arbitrary code.*--trust-pickle"):
        load_model_spec(tmp_path / "whole.pt")
    model, record = load_model_spec(tmp_path / "whole.pt", trust_pickle=True)
    assert "trusted" in record["format"]
    _same(model, reference)


def test_broken_and_missing_model_files(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_model_spec(tmp_path / "bad.pt")
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(CheckpointError, match="safetensors"):
        load_model_spec(tmp_path / "bad.safetensors", architecture="tiny2d")
    with pytest.raises(ModelError, match="no such model file"):
        load_model_spec(tmp_path / "nothing.pt")


def test_bad_architecture_options_are_one_clear_error():
    from camscope.errors import ModelError
    from camscope.io import load_model_spec

    with pytest.raises(ModelError, match="check --arch-option"):
        load_model_spec("tiny3d", options={"foo": 1})
