"""Model tests run tiny shapes: one torch thread each."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny shapes: two threads only add synchronisation, which is very slow when the cores are shared."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
