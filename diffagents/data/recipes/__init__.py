"""Local, seeded dataset recipes (``make_dataset``); importing this package registers all of them."""

from __future__ import annotations

from diffagents.data.recipes import mpe_spread, mujoco, pendulum, pointmaze, toy  # noqa: F401  (registration)
from diffagents.data.recipes.base import RECIPES, list_recipes, make_dataset, reference_scores

__all__ = ["RECIPES", "list_recipes", "make_dataset", "reference_scores"]
