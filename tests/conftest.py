import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Tiny matrices: a second thread only contends on a shared CPU (opt in with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
