"""Multi-turn rollouts: token-in/token-out trajectories from a Policy playing ToolEnvs."""

from .engine import CONTEXT_NOTE, Batcher, RolloutConfig, RolloutEngine
from .render import ChatRenderer
from .trajectory import Trajectory, collate

__all__ = ["CONTEXT_NOTE", "Batcher", "ChatRenderer", "RolloutConfig", "RolloutEngine", "Trajectory", "collate"]
