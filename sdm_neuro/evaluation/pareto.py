"""The Pareto front of settings scored on costs to minimise (energy per image, FID)."""

from __future__ import annotations

from collections.abc import Sequence


def pareto_front(points: Sequence[tuple[float, ...]]) -> list[int]:
    """Indices of the points no other point dominates (as good in every cost and better in
    one), in input order. Equal points are all on the front."""
    front = []
    for i, p in enumerate(points):
        dominated = any(all(a <= b for a, b in zip(q, p, strict=True))
                        and any(a < b for a, b in zip(q, p, strict=True))
                        for j, q in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return front
