"""Models from elsewhere as agora runs: the authors' released checkpoints (`agora import`).

A small package beside the stages: it reads foreign files without executing them
(`inert_pickle`), maps their tensors onto `models.AgoraGenerator` configured to reproduce their
forward (`official_checkpoint`), and writes/reads the imported run folder (`run_folder`).
"""

from agora_core.importer.inert_pickle import InertRecord, PersistentRecord, load_inert_pickle
from agora_core.importer.official_checkpoint import (
    OfficialCheckpoint,
    convert_official_state,
    official_generator_config,
    official_head_assets,
    read_official_checkpoint,
)
from agora_core.importer.run_folder import (
    ImportedRun,
    import_official_agora_m,
    import_official_checkpoint,
    load_imported_run,
)

__all__ = [
    "InertRecord", "PersistentRecord", "load_inert_pickle",
    "OfficialCheckpoint", "read_official_checkpoint", "official_generator_config", "official_head_assets",
    "convert_official_state", "ImportedRun", "import_official_checkpoint", "import_official_agora_m",
    "load_imported_run",
]  # fmt: skip
