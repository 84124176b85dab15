import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Nothing in the suite may reach a hub: make any accidental download fail fast and loud.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")


@pytest.fixture(autouse=True)
async def _close_shared_sandbox_pools():
    # Envs lease sandboxes from a pool per event loop; each test's loop ends with the test.
    yield
    from sandboxes.pool import close_shared_pools

    await close_shared_pools()


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except Exception:
        has_gpu = False
    if has_gpu:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; run on a GPU machine with -m gpu")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
