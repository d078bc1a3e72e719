"""Training (paper sec. 3.8, 4): configs, losses, the loop, checkpoints, DDP, SWD.

Import the loop as `from agora_core.train.loop import train`; this package's `__init__` imports
nothing heavy so `agora_core.train.config` can be read without building models.
"""
