import atexit
import os
import shutil
import tempfile

# Tests never read or write the user's caches (Hugging Face, clmae features): set before anything imports them.
_CACHE = tempfile.mkdtemp(prefix="clmae-tests-")
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
os.environ["HF_HOME"] = os.path.join(_CACHE, "hf")
os.environ["CLMAE_CACHE"] = os.path.join(_CACHE, "clmae")
# Under pytest-xdist (`make test` runs one worker per core): one intra-op thread per worker and per process a test
# starts, so that threads never outnumber the cores (more only spin, waiting for each other). Set before torch loads.
XDIST = bool(os.environ.get("PYTEST_XDIST_WORKER"))
if XDIST:
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

import clmae  # noqa: E402

if XDIST:
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

# Seconds a test waits for a process, a thread or a file before it calls it hung. Only a hang guard: generous, so
# that a run slowed down by a busy machine still passes (no outcome may depend on the machine's speed).
HANG_GUARD = 1800

TINY = dict(embed_dim=32, depth=2, num_heads=2, decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2)
# model_kwargs of the smallest pretraining runs (one encoder block, one masking-module block)
TINY_RUN = {**TINY, "depth": 1, "masker_depth": 1}


# What a training checkpoint holds besides its digest, written out here by hand (not read from the code under test).
CHECKPOINT_KEYS = {
    "model",
    "mae_optimizer",
    "masker_optimizer",
    "epoch",
    "step",
    "epoch_step",
    "epoch_sums",
    "global_batch",
    "data_size",
    "data_fingerprint",
    "config",
    "rng_ranks",
    "metrics",
}


def tiny_pretrainer(method: str = "clmae", seed: int = 0, **kwargs) -> clmae.CLMAE:
    """A CL-MAE on 28x28 one-channel images (49 patches) small enough for unit tests."""
    torch.manual_seed(seed)
    return clmae.create_pretraining_model("vit_tiny_patch4_28", method, **{**TINY, "masker_depth": 1, **kwargs})


@pytest.fixture
def one_thread():
    """One intra-op thread for tests of tiny tensors: on busy shared cores a second thread only adds waiting."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(6, 1, 28, 28, generator=torch.Generator().manual_seed(1))


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist, the end-to-end runs first, then the other slow tests: the workers take tests as they finish
    them, so the longest start early and the short ones fill the gaps at the end (the order within a group is kept)."""
    if XDIST:
        items.sort(
            key=lambda item: (
                0 if item.get_closest_marker("integration") else 1 if item.get_closest_marker("slow") else 2
            )
        )
