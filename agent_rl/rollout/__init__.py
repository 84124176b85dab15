"""Multi-turn rollouts: token-in/token-out trajectories from a Policy playing ToolEnvs."""

from .arpo import ArpoConfig, ArpoRolloutEngine, assign_segments, branch_probability
from .engine import CONTEXT_NOTE, Batcher, RolloutConfig, RolloutEngine
from .render import ChatRenderer
from .trajectory import Trajectory, collate

__all__ = ["ArpoConfig", "ArpoRolloutEngine", "assign_segments", "branch_probability", "CONTEXT_NOTE", "Batcher", "ChatRenderer", "RolloutConfig", "RolloutEngine", "Trajectory", "collate"]
