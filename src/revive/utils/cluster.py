"""Lightning cluster environment for ranks started by submitit's local executor.

On SLURM, Lightning's own ``SLURMEnvironment`` reads the ranks srun started. submitit's local
executor starts the same layout (one task per device) without srun; this environment lets
Lightning join those ranks instead of spawning its own (which breaks under submitit, hydra #2231).
"""

from __future__ import annotations

import os

from lightning_fabric.plugins.environments import ClusterEnvironment


class SubmititLocalEnvironment(ClusterEnvironment):
    """Ranks from ``submitit.JobEnvironment()`` of a local multi-task job."""

    def __init__(self) -> None:
        super().__init__()
        import submitit

        self._env = submitit.JobEnvironment()

    @property
    def creates_processes_externally(self) -> bool:
        return True

    @property
    def main_address(self) -> str:
        return "127.0.0.1"

    @property
    def main_port(self) -> int:
        return int(os.environ.get("MASTER_PORT", 29511))

    @staticmethod
    def detect() -> bool:
        return (
            "SUBMITIT_LOCAL_NTASKS" in os.environ and int(os.environ["SUBMITIT_LOCAL_NTASKS"]) > 1
        )

    def world_size(self) -> int:
        return self._env.num_tasks

    def set_world_size(self, size: int) -> None:
        pass  # fixed by the launcher

    def global_rank(self) -> int:
        return self._env.global_rank

    def set_global_rank(self, rank: int) -> None:
        pass  # fixed by the launcher

    def local_rank(self) -> int:
        return self._env.local_rank

    def node_rank(self) -> int:
        return self._env.node
