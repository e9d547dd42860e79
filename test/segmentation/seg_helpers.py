"""Shared helpers (imported as a plain module; pytest puts this folder on sys.path) for the segmentation tests: generator scenes as organised clouds."""

from __future__ import annotations

import functools

from depth_perception.scene import generate_tabletop


@functools.lru_cache(maxsize=None)
def tabletop(seed: int, separated: bool = True, width: int = 320, height: int = 240):
    """(scene, organised cloud HxWx3 float32) of a generator scene; cached across tests."""
    scene = generate_tabletop(seed=seed, width=width, height=height, separated=separated)
    return scene, scene.points()
