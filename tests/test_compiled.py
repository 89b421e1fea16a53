"""xailib.accelerate: compiled forward passes without gradients, the model itself for gradients."""
import shutil
import warnings

import pytest
import torch
from torch import nn

import xailib
from xailib import experiments
from xailib.compiled import Accelerated, _pieces
from xailib.explainers import Gradient, KernelSHAP, Occlusion

needs_compiler = pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                                    reason="torch.compile needs a C++ compiler on CPU")


def small_cnn(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(4 * 5 * 5, 3)).eval()


def wrapped_cnn(n, max_batch=16):
    """A small CNN, its wrapper (pieces of 16 to ``max_batch`` inputs) and ``n`` inputs for it."""
    m = small_cnn()
    return m, xailib.accelerate(m, min_batch=16, max_batch=max_batch), torch.rand(n, 1, 12, 12)


class CheatsWhenCompiled(nn.Module):
    """A planted error: adds 1 to its output when traced by torch.compile."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 2)

    def forward(self, x):
        out = self.lin(x)
        if torch.compiler.is_compiling():
            out = out + 1.0
        return out


@pytest.mark.parametrize("n,lo,hi", [(1, 16, 32), (16, 16, 32), (100, 16, 32), (47, 16, 64), (64, 16, 64)])
def test_pieces_cover_the_batch_with_few_shapes(n, lo, hi):
    pieces = list(_pieces(n, lo, hi))
    assert [p[0] for p in pieces] == [0] + [p[1] for p in pieces[:-1]]  # contiguous
    assert pieces[-1][1] == n
    for s, e, size in pieces:
        assert lo <= size <= hi and size & (size - 1) == 0 and e - s <= size
        assert e - s == size or (s, e, size) == pieces[-1]  # only the last piece is padded


@needs_compiler
def test_compiled_forward_matches_the_model_and_is_used():
    m, fast, x = wrapped_cnn(100, max_batch=32)
    with torch.no_grad():
        ref = m(x)
        out = fast(x)
        assert fast.compiled_calls == 4  # 32 + 32 + 32 + 4 padded to 16
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
        fast(x[:5])  # under min_batch: the model itself
    assert fast.compiled_calls == 4 and fast.fallback_reason is None


@needs_compiler
def test_gradients_and_training_mode_use_the_model_itself():
    m, fast, x = wrapped_cnn(20)
    t = torch.randint(0, 3, (20,))
    assert torch.equal(Gradient(fast)(x, t), Gradient(m)(x, t))
    assert fast.compiled_calls == 0
    fast.train()
    with torch.no_grad():
        assert torch.equal(fast(x), m(x))
    assert fast.compiled_calls == 0 and m.training
    fast.eval()


@needs_compiler
def test_weights_changed_after_wrapping_are_seen():
    m, fast, x = wrapped_cnn(16)
    with torch.no_grad():
        before = fast(x)
        m[0].weight.mul_(-2.0)  # in place: the compiled copy has the old weights frozen in
        after = fast(x)
        torch.testing.assert_close(after, m(x), rtol=1e-5, atol=1e-6)
        assert not torch.allclose(after, before)
        m[4].weight = nn.Parameter(torch.zeros_like(m[4].weight))  # replaced
        torch.testing.assert_close(fast(x), m(x), rtol=1e-5, atol=1e-6)


@needs_compiler
def test_a_compiled_model_that_differs_is_caught_and_dropped():
    m = CheatsWhenCompiled().eval()
    fast = xailib.accelerate(m, min_batch=16, max_batch=16)
    x = torch.rand(16, 4)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        with torch.no_grad():
            out = fast(x)
    assert torch.equal(out, m(x))
    assert fast.fallback_reason is not None and "differs" in fast.fallback_reason
    assert any("xailib.accelerate" in str(r.message) for r in w)
    with torch.no_grad():
        fast(x)
    assert fast.compiled_calls == 0


@needs_compiler
def test_forward_only_explainers_agree_with_the_eager_model():
    m, fast, x = wrapped_cnn(3, max_batch=64)
    t = torch.tensor([0, 1, 2])
    for make in (lambda f: KernelSHAP(f, n_samples=400, seed=3), lambda f: Occlusion(f)):
        a, b = make(fast)(x, t), make(m)(x, t)
        assert (a - b).norm() <= 1e-4 * b.norm()
    assert fast.compiled_calls > 0 and fast.fallback_reason is None


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match="model"):
        xailib.accelerate(lambda x: x)
    with pytest.raises(ValueError, match="min_batch"):
        xailib.accelerate(small_cnn(), min_batch=24)
    with pytest.raises(ValueError, match="max_batch"):
        xailib.accelerate(small_cnn(), min_batch=64, max_batch=32)
    inner = small_cnn()
    assert xailib.accelerate(xailib.accelerate(inner)).module is inner


def test_the_paper_profile_runs_the_compiled_model_and_the_default_one_the_model():
    m = small_cnn()
    D, P = experiments.mnist_settings("default"), experiments.mnist_settings("paper")
    assert experiments.table_model(m, D) is m
    fast = experiments.table_model(m, P)
    assert isinstance(fast, Accelerated) and fast.module is m
    assert experiments.table_model(fast, P) is fast  # one wrapper, shared
    shap = experiments.make_explainers(fast, P, names=["SHAP"])["SHAP"]
    assert shap.model is fast


@needs_compiler
def test_projected_costs_project_the_paper_column_from_the_compiled_network():
    from xailib.models import MnistCNN

    m = MnistCNN().eval()
    d = experiments.mnist_settings("smoke")
    p = dict(d, compiled=True, n_instances=50, n_sens=50, n_shap=64)
    x, t = torch.rand(3, 1, 28, 28), torch.tensor([1, 2, 3])
    table, phis, info = experiments.projected_costs(m, x, t, default=d, paper=p, forward_batch=128)
    assert set(phis) == set(xailib.paper.METHODS) and info["seconds_paper_model"] is not info["seconds"]
    assert set(info["paper_seconds"]) == {"SHAP", "NB"}
    kw = dict(default=d, paper=p, paper_seconds=info["paper_seconds"], shape=(1, 28, 28))
    eager = experiments.project_time(info["seconds"], info["forward"], **kw)
    compiled = experiments.project_time(info["seconds_paper_model"], info["forward_paper"], **kw)
    assert table["default [min]"].equals(eager["default [min]"])
    assert table["paper [min]"].equals(compiled["paper [min]"])
    assert not table["paper [min]"].equals(eager["paper [min]"])


@needs_compiler
def test_copies_carry_the_model_and_compile_their_own():
    import copy

    m, fast, x = wrapped_cnn(16)
    with torch.no_grad():
        fast(x)
        twin = copy.deepcopy(fast)  # e.g. a sanity check's cascading randomisation copies the model
        twin.module[0].weight.zero_()
        torch.testing.assert_close(twin(x), twin.module(x), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(fast(x), m(x), rtol=1e-5, atol=1e-6)  # the original is untouched
    assert twin.compiled_calls == 1 and fast.compiled_calls == 2
