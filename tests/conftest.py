import os

os.environ.setdefault("XAILIB_PROGRESS", "0")

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    torch.set_num_threads(int(os.environ.get("XAILIB_THREADS", "2")))
    yield
