"""The vision chapters' models: CifarResNet, the SGD / one-cycle / crop-and-flip training recipe,
the CIFAR-10 config and its missing-data error, and the offline-first pretrained ImageNet models."""
import copy
import json
import time
import urllib.request

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xailib import data, models, pretrained, training

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


# --------------------------------------------------------------------------- CifarResNet


def test_cifar_resnet_parameter_count_by_hand():
    w = 64
    # 3x3 kernels, no bias: prep, layer 1, its residual pair, layer 2, layer 3, its residual pair
    convs = 9 * (3 * w + w * 2 * w + 2 * (2 * w) ** 2 + 2 * w * 4 * w + 4 * w * 8 * w + 2 * (8 * w) ** 2)
    bns = 2 * (w + 2 * w + 2 * (2 * w) + 4 * w + 8 * w + 2 * (8 * w))  # weight and bias per channel
    linear = 8 * w * 10  # no bias
    assert convs + bns + linear == 6_573_120
    assert sum(p.numel() for p in models.CifarResNet(64).parameters()) == 6_573_120
    for width, k in ((16, 10), (5, 7)):  # the docstring's closed form 1602 w² + (97 + 8 K) w
        m = models.CifarResNet(width, n_classes=k)
        assert sum(p.numel() for p in m.parameters()) == 1602 * width**2 + (97 + 8 * k) * width


def test_cifar_resnet_shape_and_relus():
    m = models.CifarResNet(width=8, n_classes=7).eval()
    assert m(torch.rand(3, 3, 32, 32)).shape == (3, 7)
    relus = [mod for mod in m.modules() if isinstance(mod, nn.ReLU)]
    assert len(relus) == 8 and len({id(r) for r in relus}) == 8 and not any(r.inplace for r in relus)
    calls = []
    for r in relus:
        r.register_forward_hook(lambda mod, i, o: calls.append(id(mod)))
    m(torch.rand(2, 3, 32, 32))
    assert sorted(calls) == sorted(id(r) for r in relus)  # each ReLU module applied exactly once
    assert models.build_model(models.model_config("cifar10_resnet")).__class__ is models.CifarResNet


def test_cifar_resnet_normalises_inside():
    torch.manual_seed(1)
    m = models.CifarResNet(width=8).eval()
    for mod in m.modules():  # non-trivial BatchNorm statistics
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
    assert {n for n, _ in m.named_buffers()} >= {"mean", "std"}
    assert not any(n in ("mean", "std") for n, _ in m.named_parameters())
    x = torch.rand(4, 3, 32, 32)
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    expected = m.net((x - mean) / std)
    assert torch.allclose(m(x), expected, atol=1e-6)
    assert not torch.allclose(m.net(x), expected, atol=1e-3)  # the normalisation matters
    # the last layer scales the logits by 0.125
    feats = m.net[:-2](((x - mean) / std))
    assert torch.allclose(expected, 0.125 * feats.flatten(1) @ m.net[-2].weight.T, atol=1e-6)


# --------------------------------------------------------------------------- augmentations


def test_crop_zero_and_flip_are_involutions():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(50, 3, 8, 8)
    assert torch.equal(training.random_crop(x, 0, g), x)
    once = training.random_flip(x, torch.Generator().manual_seed(5))
    twice = training.random_flip(once, torch.Generator().manual_seed(5))
    assert torch.equal(twice, x)  # the same mask twice: a flip is its own inverse
    flipped = [bool(torch.equal(once[i], x[i].flip(-1))) for i in range(50)]
    kept = [bool(torch.equal(once[i], x[i])) for i in range(50)]
    assert all(f != k for f, k in zip(flipped, kept))  # every image either mirrored or kept
    assert 10 < sum(flipped) < 40
    with pytest.raises(ValueError, match="`k`"):
        training.random_crop(x, -1, g)
    with pytest.raises(ValueError, match="reflect"):
        training.random_crop(x, 8, g)


def test_crop_is_a_window_of_the_reflect_padded_image():
    k, n = 2, 40
    x = torch.rand(n, 2, 6, 5)
    out = training.random_crop(x, k, torch.Generator().manual_seed(3))
    assert out.shape == x.shape
    again = training.random_crop(x, k, torch.Generator().manual_seed(3))
    assert torch.equal(out, again)  # deterministic given the generator
    offsets = set()
    for i in range(n):
        padded = np.pad(x[i].numpy(), ((0, 0), (k, k), (k, k)), mode="reflect")  # independent reference
        hits = [(a, b) for a in range(2 * k + 1) for b in range(2 * k + 1)
                if np.array_equal(padded[:, a : a + 6, b : b + 5], out[i].numpy())]
        assert hits, i
        offsets.add(hits[0])
    assert len(offsets) > 5  # the offsets vary over {0, ..., 2k}²


# --------------------------------------------------------------------------- schedule and training


def test_onecycle_values():
    lr, T = 0.4, 100  # warm-up W = 25 updates
    lrs = [training.onecycle_lr(s, T, lr) for s in range(T)]
    assert lrs[0] == pytest.approx(lr / 25) and lrs[12] == pytest.approx(lr * 13 / 25)
    assert lrs[24] == pytest.approx(lr) and lrs[25] == pytest.approx(lr) and max(lrs) == pytest.approx(lr)
    assert lrs[-1] == pytest.approx(lr / 75) and lrs[62] == pytest.approx(lr * 38 / 75)
    assert all(a < b for a, b in zip(lrs[:24], lrs[1:25])) and all(a > b for a, b in zip(lrs[25:], lrs[26:]))
    assert min(lrs) > 0
    with pytest.raises(ValueError, match="step"):
        training.onecycle_lr(T, T, lr)


def _colour_task(n=64, seed=0):
    """Class 1: red-dominant images, class 0: blue-dominant (invariant to crops and flips)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = 0.4 * torch.rand(n, 3, 32, 32, generator=g)
    x[y == 1, 0] += 0.5
    x[y == 0, 2] += 0.5
    return x, y


def test_train_sgd_onecycle_crop_flip_is_deterministic_and_learns(monkeypatch):
    x, y = _colour_task()
    seen = []
    step = torch.optim.SGD.step

    def recording_step(self, *a, **kw):
        seen.append((self.param_groups[0]["lr"], self.param_groups[0]["nesterov"], self.param_groups[0]["momentum"]))
        return step(self, *a, **kw)

    monkeypatch.setattr(torch.optim.SGD, "step", recording_step)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        m = models.CifarResNet(width=4)
        h = training.train(m, x, y, epochs=6, batch_size=16, lr=0.2, seed=5, optimizer="sgd", nesterov=True,
                           momentum=0.9, weight_decay=5e-4, lr_schedule="onecycle", label_smoothing=0.2,
                           augment_crop=4, augment_flip=True, progress=False)
        runs.append((m.state_dict(), h))
        assert not m.training
    (s0, h0), (s1, h1) = runs
    assert all(torch.equal(s0[k], s1[k]) for k in s0) and h0["loss"] == h1["loss"]
    assert h0["loss"][-1] < 0.7 * h0["loss"][0] and h0["train_acc"][-1] >= 0.9
    T = 6 * 4
    assert [s[0] for s in seen[:T]] == pytest.approx([training.onecycle_lr(s, T, 0.2) for s in range(T)])
    assert all(s[1] is True and s[2] == 0.9 for s in seen)
    torch.manual_seed(0)
    m = models.CifarResNet(width=4)
    h2 = training.train(m, x, y, epochs=1, batch_size=16, lr=0.2, seed=6, optimizer="sgd",
                        augment_crop=4, augment_flip=True, progress=False)
    assert h2["loss"][0] != h0["loss"][0]  # another seed, other batches and augmentations


def test_train_validates_new_arguments():
    m = models.CifarResNet(width=2)
    x, y = torch.rand(4, 3, 32, 32), torch.zeros(4, dtype=torch.long)
    for kw, match in ((dict(optimizer="rmsprop"), "optimizer"), (dict(lr_schedule="step"), "lr_schedule"),
                      (dict(label_smoothing=1.0), "label_smoothing"), (dict(augment_crop=-1), "augment_crop"),
                      (dict(augment_flip=1), "augment_flip")):
        with pytest.raises(ValueError, match=match):
            training.train(m, x, y, **kw)


# --------------------------------------------------------------------------- configs


@pytest.mark.parametrize("name", models.MNIST_MODEL_NAMES)
def test_mnist_config_keys_unchanged(name):
    side = json.loads((models.weights_dir() / f"{name}.json").read_text())
    cfg = models.model_config(name)
    assert models.config_key(cfg) == side["key"] and set(cfg) == set(side["config"])


def test_cifar10_config_profiles(monkeypatch):
    monkeypatch.delenv("XAILIB_PROFILE", raising=False)
    cfg = models.model_config("cifar10_resnet")
    assert cfg["arch"] == "CifarResNet" and cfg["data"] == {"dataset": "cifar10", "source": "full", "split": "train",
                                                            "n": 50000}
    assert (cfg["optimizer"], cfg["momentum"], cfg["nesterov"], cfg["lr_schedule"]) == ("sgd", 0.9, True, "onecycle")
    assert (cfg["batch_size"], cfg["label_smoothing"], cfg["augment_crop"], cfg["augment_flip"]) == (512, 0.2, 4, True)
    assert cfg["arch_kwargs"]["width"] == 16 and cfg["epochs"] == 8
    monkeypatch.setenv("XAILIB_PROFILE", "paper")
    paper = models.model_config("cifar10_resnet")
    assert paper["arch_kwargs"]["width"] == 64 and paper["data"]["n"] == 50000 and paper["epochs"] == 24
    assert models.config_key(paper) != models.config_key(cfg)
    assert "cifar10_resnet" in models.MODEL_NAMES
    monkeypatch.setenv("XAILIB_PROFILE", "smoke")
    smoke = models.model_config("cifar10_resnet")
    assert (smoke["arch_kwargs"]["width"], smoke["data"]["n"], smoke["epochs"], smoke["batch_size"]) == (8, 256, 2, 64)


def _fake_cifar_root(root, n=40):
    """CIFAR-10's on-disk format: pickled batches of uint8 rows (3072 = 3·32·32) and labels."""
    import pickle

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = rng.integers(0, 10, n)
        rows = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        with open(folder / name, "wb") as fh:
            pickle.dump({"labels": labels.tolist(), "data": rows}, fh)
    return root


def test_get_cifar_model_trains_on_the_full_set_with_the_recipe(tmp_path, monkeypatch):
    monkeypatch.setenv("XAILIB_DATA", str(_fake_cifar_root(tmp_path / "data")))
    monkeypatch.setenv("XAILIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("XAILIB_DOWNLOAD", raising=False)
    calls = []
    real_train = models.train

    def spy(model, x, y, **kw):
        calls.append((x.shape, kw))
        return real_train(model, x, y, **kw)

    monkeypatch.setattr(models, "train", spy)
    over = dict(arch_kwargs={"width": 2}, data={"n": 150}, epochs=1, batch_size=64)
    m = models.get_model("cifar10_resnet", verbose=False, **over)
    assert isinstance(m, models.CifarResNet) and not m.training and m.xailib_info["source"] == "trained"
    shape, kw = calls[0]
    assert shape == (150, 3, 32, 32)  # the first 150 images of data_batch_1..5
    assert {k: kw[k] for k in ("optimizer", "momentum", "nesterov", "lr_schedule", "label_smoothing",
                               "augment_crop", "augment_flip", "weight_decay", "lr")} == {
        "optimizer": "sgd", "momentum": 0.9, "nesterov": True, "lr_schedule": "onecycle", "label_smoothing": 0.2,
        "augment_crop": 4, "augment_flip": True, "weight_decay": 5e-4, "lr": 0.4}
    again = models.get_model("cifar10_resnet", verbose=False, **over)
    assert again.xailib_info["source"] == "cache" and len(calls) == 1
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), again.state_dict().values()))


def test_get_cifar_model_without_data_raises_at_once(tmp_path, monkeypatch):
    monkeypatch.setenv("XAILIB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("XAILIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("XAILIB_DOWNLOAD", raising=False)
    t0 = time.perf_counter()
    with pytest.raises(models.DataUnavailable) as err:
        models.get_model("cifar10_resnet", verbose=False)
    assert time.perf_counter() - t0 < 1.0
    msg = str(err.value)
    assert isinstance(err.value, FileNotFoundError) and "\n" not in msg
    assert "XAILIB_DOWNLOAD=1 make book" in msg and "XAILIB_DATA" in msg and str(tmp_path / "data") in msg
    # an incomplete folder: the message names the missing file
    folder = tmp_path / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    (folder / "data_batch_1").write_bytes(b"x")
    with pytest.raises(models.DataUnavailable, match="data_batch_2"):
        models.get_model("cifar10_resnet", verbose=False)


# --------------------------------------------------------------------------- pretrained ImageNet models


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """TORCH_HOME in a tmp dir, no XAILIB_DOWNLOAD, and any network call fails the test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("XAILIB_DOWNLOAD", raising=False)

    def no_network(*a, **kw):
        pytest.fail("network call")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return tmp_path / "torch" / "hub" / "checkpoints"


def test_imagenet_model_missing_weights_raises_offline(offline_hub, monkeypatch):
    path = pretrained.imagenet_weights_file("resnet18", "IMAGENET1K_V1")
    assert path == offline_hub / "resnet18-f37072fd.pth"
    assert pretrained.imagenet_weights_file("resnet50") == offline_hub / "resnet50-11ad3fa6.pth"  # DEFAULT = V2
    with pytest.raises(pretrained.WeightsUnavailable) as err:
        pretrained.imagenet_model("resnet18", "IMAGENET1K_V1")
    msg = str(err.value)
    assert isinstance(err.value, FileNotFoundError) and "\n" not in msg
    assert str(path) in msg and "XAILIB_DOWNLOAD=1 make book" in msg and "TORCH_HOME" in msg
    monkeypatch.setenv("XAILIB_DOWNLOAD", "1")
    with pytest.raises(pretrained.WeightsUnavailable):  # download=False wins over the environment
        pretrained.imagenet_model("resnet18", "IMAGENET1K_V1", download=False)


def test_imagenet_model_loads_the_cached_file(offline_hub, capsys):
    import torchvision

    torch.manual_seed(3)
    ref = torchvision.models.resnet18()
    for mod in ref.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.1, 0.1)
    offline_hub.mkdir(parents=True)
    torch.save(ref.state_dict(), offline_hub / "resnet18-f37072fd.pth")
    m = pretrained.imagenet_model("resnet18", "IMAGENET1K_V1")
    assert isinstance(m, data.Normalize) and not m.training
    info = m.xailib_info
    assert info["source"] == "hub cache" and info["weights"] == "IMAGENET1K_V1" and info["arch"] == "resnet18"
    assert info["acc@1"] == pytest.approx(69.758) and info["acc@5"] == pytest.approx(89.078)
    assert info["path"] == str(offline_hub / "resnet18-f37072fd.pth")
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "torch hub cache" in out and "resnet18-f37072fd.pth" in out
    x = torch.rand(2, 3, 64, 64)
    expected = data.Normalize(ref.eval(), data.IMAGENET_MEAN, data.IMAGENET_STD)(x)
    assert torch.allclose(m(x), expected, atol=1e-5)


def test_imagenet_model_download_branch(offline_hub, monkeypatch):
    import torchvision

    ref = torchvision.models.resnet18()
    probed = []
    monkeypatch.setattr(data, "_probe", lambda urls, deadline: probed.append((urls, deadline - time.monotonic())))

    def fake_download(url, dst, hash_prefix=None, progress=True):
        torch.save(ref.state_dict(), dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    m = pretrained.imagenet_model("resnet18", "IMAGENET1K_V1", download=True, verbose=False)
    assert m.xailib_info["source"] == "download" and (offline_hub / "resnet18-f37072fd.pth").is_file()
    assert probed[0][0] == [torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url]
    assert 0 < probed[0][1] <= data.DOWNLOAD_TIMEOUT_S
    # a failed probe: WeightsUnavailable, nothing written
    monkeypatch.setattr(data, "_probe", lambda urls, deadline: (_ for _ in ()).throw(TimeoutError("no answer")))
    with pytest.raises(pretrained.WeightsUnavailable, match="no answer"):
        pretrained.imagenet_model("resnet34", download=True, verbose=False)
    assert not pretrained.imagenet_weights_file("resnet34").exists()


def test_imagenet_unknown_names():
    with pytest.raises(ValueError, match="resnet50"):
        pretrained.imagenet_model("resnet51")
    with pytest.raises(ValueError, match="IMAGENET1K_V1"):
        pretrained.imagenet_weights_file("resnet18", "IMAGENET1K_V9")
    with pytest.raises(ValueError, match="arch"):
        pretrained.imagenet_architecture("fasterrcnn_resnet50_fpn")


def test_guided_backprop_handles_torchvision_inplace_shared_relus():
    """torchvision's ResNets reuse one in-place ``nn.ReLU`` per block; GBP is unchanged when every
    ReLU is made a non-in-place module, so imagenet_model keeps them as they are."""
    from xailib.explainers import Gradient, GuidedBackprop

    m = pretrained.imagenet_architecture("resnet18")
    assert isinstance(m, data.Normalize) and not m.training and m.xailib_info["source"] == "random"
    assert any(isinstance(mod, nn.ReLU) and mod.inplace for mod in m.modules())
    plain = copy.deepcopy(m)
    for mod in plain.modules():
        if isinstance(mod, nn.ReLU):
            mod.inplace = False
    x = torch.rand(2, 3, 64, 64)
    gbp = GuidedBackprop(m)(x, target=1)
    assert torch.allclose(gbp, GuidedBackprop(plain)(x, target=1), atol=1e-6)
    assert not torch.allclose(gbp, Gradient(m)(x, target=1), atol=1e-6)
