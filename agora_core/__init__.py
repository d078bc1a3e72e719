"""agora_core: the library behind the `agora` CLI (AGORA: animatable 3D Gaussian head avatars).

One sub-package per pipeline stage; see docs/architecture.md for the layout and the files that
pass between stages.
"""

from agora_core.errors import AgoraError

__all__ = ["AgoraError"]
__version__ = "0.1.0"
