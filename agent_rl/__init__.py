"""agent_rl"""
