"""Training (paper sec. 3.8, 4): losses, the loop, writing checkpoints, DDP, sample grids.

What later stages need of a run lives outside this package, so none of them imports it: the config
(`agora_core.run_config`), the head (`head.build`), reading checkpoints (`inference.checkpoint`),
SWD (`metrics.swd`), the generator conditions (`data.conditions`). Import the loop as
`from agora_core.train.loop import train`; this package's `__init__` imports nothing.
"""
