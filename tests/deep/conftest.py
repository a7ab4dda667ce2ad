import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # tiny networks on a shared 2-core machine: more threads only add contention
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
