"""One local Ray instance with 2 CPU slots for the whole test session (its start takes
seconds on a loaded machine): every scale-out test runs its shards there."""

from __future__ import annotations

import pytest
import ray


@pytest.fixture(scope="session", autouse=True)
def local_ray():
    from sdm_neuro.scaleout.cluster import start

    start(2, None)
    yield
    ray.shutdown()
