import os

# No model hub is reachable from the tests. Offline mode makes a hub lookup fail at once instead of
# retrying for ~25 s; set before huggingface_hub is imported, which reads it once.
os.environ["HF_HUB_OFFLINE"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

# The test machine has few cores shared with other work; one intra-op thread is several times faster
# there for these tiny models than oversubscribed threads, and changes no result.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def demo_cache(tmp_path_factory) -> "os.PathLike":
    """paths.cache_dir shared by all training runs, so each demo size is generated once."""
    return tmp_path_factory.mktemp("vemo-cache")


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory):
    """A small generated demo dataset (store, labels.csv, classes.txt)."""
    from vemo.demo.features import generate_demo
    return generate_demo(tmp_path_factory.mktemp("demo") / "d", num_videos=120, seed=0)


@pytest.fixture
def subprocess_env(tmp_path):
    """Environment for ``python -m vemo...`` subprocesses: offline, quiet, one thread per process."""
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", WANDB_MODE="offline", WANDB_SILENT="true",
               WANDB_DIR=str(tmp_path), WANDB_CONFIG_DIR=str(tmp_path / "wandb-config"),
               WANDB_CACHE_DIR=str(tmp_path / "wandb-cache"), HYDRA_FULL_ERROR="0", PYTHONUNBUFFERED="1")
    return env


def pytest_configure(config):
    # Lightning notes that are expected with the tiny runs here and say nothing about vemo
    for message in ("Experiment logs directory .* exists and is not empty",
                    "The number of training batches .* is smaller than the logging interval"):
        config.addinivalue_line("filterwarnings", f"ignore:{message}")


@pytest.fixture(scope="session")
def video_model(tmp_path_factory):
    """(run folder, demo root) of a small model trained on generated demo videos with offline
    features (audio, frames, ocr, speech), shared by the prediction and web-demo tests."""
    from vemo.demo.model import ensure_demo_model

    cache = tmp_path_factory.mktemp("demo-model")
    run_dir = ensure_demo_model(cache, num_videos=18, seconds=3.0, size=(160, 120), max_epochs=10, progress=False)
    return run_dir, run_dir.parent
