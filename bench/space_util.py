"""Load a space in the benchmark process (for the bare-model baselines) and build an in-process MapService."""

from __future__ import annotations

import io
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402


def load_space(name: str, data_dir: str | None = None):
    """The same space the server loads for `--space name` (tiny-random is rebuilt deterministically)."""
    from app.settings import Settings
    from app.spaces.registry import load_space as registry_load

    data_dir = data_dir or tempfile.mkdtemp(prefix="latentmap-bench-space-")
    return registry_load(Settings.from_env(data_dir=Path(data_dir), space=name))  # LATENTMAP_DEVICE etc.


def make_service(space, data_dir: str | None = None, **settings_overrides):
    from app.jobs import WorkQueue
    from app.maps.service import MapService
    from app.maps.store import Store
    from app.settings import Settings

    data_dir = Path(data_dir or tempfile.mkdtemp(prefix="latentmap-bench-data-"))
    settings = Settings(
        data_dir=data_dir, space=space.name, warm_umap=False, create_demo_map=False, **settings_overrides
    )
    return MapService(Store(data_dir), space, settings, WorkQueue(settings.max_queued_jobs))


def photo_like_png(seed: int, size: int = 256) -> bytes:
    """A smooth random colour image (compresses and decodes like a photo more than white noise does)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    im = Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def pct(values, q):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def timed(fn, device: str = "cpu") -> float:
    """Seconds one call of fn takes, with the GPU's queued work finished before and after."""
    import time

    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def machine() -> str:
    import platform

    import torch

    dev = "cuda " + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {dev}"


def set_threads(n: int) -> dict:
    """Same torch thread count here and in the server (env for the child). 0 = leave torch's default.
    On a shared 2-core machine, 2 threads contend with other work and make single calls 10-100x noisier."""
    if n <= 0:
        return {}
    import torch

    torch.set_num_threads(n)
    return {"OMP_NUM_THREADS": str(n), "MKL_NUM_THREADS": str(n)}
