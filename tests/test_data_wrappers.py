"""diffagents.wrappers.gymnasium: Dict flattening and SB3's is_success key, each passing check_env."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from diffagents.wrappers.gymnasium import FlattenDictObservation, SuccessInfo
from gymnasium.utils.env_checker import check_env

from diffagents.data import ObsFlattener


@pytest.fixture
def maze_env():
    import gymnasium_robotics

    gym.register_envs(gymnasium_robotics)
    env = gym.make("PointMaze_UMaze-v3")
    yield env
    env.close()


def _check(env: gym.Env) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(env, skip_render_check=True)


def test_flatten_dict_observation_matches_dataset_flattener(maze_env):
    wrapped = FlattenDictObservation(maze_env)
    _check(wrapped)
    obs, _ = wrapped.reset(seed=0)
    assert obs.shape == (6,) and obs.dtype == np.float32 and wrapped.observation_space.contains(obs)
    raw, _ = maze_env.reset(seed=0)
    np.testing.assert_array_equal(obs, ObsFlattener.from_space(maze_env.observation_space)(raw))
    saved = wrapped.flattener.to_dict()
    assert FlattenDictObservation(maze_env, flattener=saved).flattener == wrapped.flattener
    with pytest.raises(ValueError, match="flattener: expected keys"):
        FlattenDictObservation(maze_env, flattener=ObsFlattener.from_space(gym.spaces.Box(0, 1, (3,))))


def test_success_info(maze_env):
    wrapped = SuccessInfo(maze_env)
    _check(wrapped)
    _, info = wrapped.reset(seed=1)
    assert info["is_success"] == info["success"]
    _, _, _, _, info = wrapped.step(wrapped.action_space.sample())
    assert isinstance(info["is_success"], bool) and info["is_success"] == info["success"]
    _check(FlattenDictObservation(SuccessInfo(maze_env)))


def test_toy_env_passes_check_env():
    env = gym.make("diffagents/ToyMultimodal-v0")
    _check(env.unwrapped)
    _check(SuccessInfo(env))
