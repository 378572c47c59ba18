"""Where the DDP ranks come from, how a preempted SLURM job continues, where sweeps keep studies.

- SLURM (``hydra/launcher=slurm``): srun starts one task per device on every node; Lightning's
  ``SLURMEnvironment`` reads the ranks from the SLURM variables.
- submitit's local executor (``hydra/launcher=local_ddp``) starts the same layout without srun;
  ``SubmititLocalEnvironment`` lets Lightning join those ranks instead of spawning its own (which
  breaks under submitit, hydra #2231).
- Lightning-launched ``strategy=ddp`` re-executes the command line in every rank; inside a
  multirun that re-runs the whole sweep (and asks Optuna for other trials), so it is refused there.

Requeue on SLURM: submitit asks SLURM for the signal ``USR2`` ``signal_delay_s`` seconds before
the time limit (``--signal=USR2@...``). ``cluster_plugins`` hands that signal to Lightning's
auto-requeue: its handler saves ``hpc_ckpt_<n>.ckpt`` in the run folder and runs
``scontrol requeue``. The requeued job re-runs the same Hydra job in the same folder (submitit
pickled its resolved config), where ``requeued_checkpoint`` finds the newest checkpoint and
training continues from it, in the same W&B run.
"""

from __future__ import annotations

import logging
import os
import re
import signal
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning_fabric.plugins.environments import ClusterEnvironment, SLURMEnvironment
from omegaconf import DictConfig

log = logging.getLogger(__name__)

HPC_CKPT = re.compile(r"hpc_ckpt_(\d+)\.ckpt")


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


def requeue_signal() -> signal.Signals:
    """The signal submitit asks SLURM to send before the time limit (``SUBMITIT_PREEMPT_SIGNAL``)."""
    return getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"))


def cluster_plugins(trainer: DictConfig) -> list[ClusterEnvironment] | None:
    """The cluster environment of externally started ranks, or None (Lightning decides).

    :param trainer: the trainer config; on SLURM its ``devices x num_nodes`` must equal the tasks
        srun started, else Lightning starts the ranks itself (and nothing requeues).
    """
    if SubmititLocalEnvironment.detect():
        log.info("Ranks started by submitit (local): joining them")
        return [SubmititLocalEnvironment()]
    if not SLURMEnvironment.detect():
        return None
    devices, nodes = trainer.get("devices", 1), trainer.get("num_nodes", 1)
    tasks = int(os.environ["SLURM_NTASKS"])
    if isinstance(devices, int) and devices * nodes != tasks:
        log.warning(
            "SLURM started %d tasks but trainer.devices x trainer.num_nodes = %d: Lightning starts "
            "the ranks itself and the job is not requeued. Use hydra/launcher=slurm "
            "(tasks_per_node = trainer.devices).",
            tasks,
            devices * nodes,
        )
        return None
    sig = requeue_signal()
    # submitit's own handler would requeue without a checkpoint; Lightning registers its handler
    # only on a signal nobody handles yet
    signal.signal(sig, signal.SIG_DFL)
    log.info("SLURM job: Lightning saves a checkpoint and requeues on %s", sig.name)
    return [SLURMEnvironment(auto_requeue=True, requeue_signal=sig)]


def requeued_checkpoint(run_dir: str | Path) -> str | None:
    """The checkpoint a requeued SLURM job continues from, or None for a fresh job.

    A job is a requeue when Lightning's handler left ``hpc_ckpt_<n>.ckpt`` in ``run_dir`` or SLURM
    counts a restart (``SLURM_RESTART_COUNT``, e.g. after a preemption's SIGTERM); it continues
    from the newest of those files and ``checkpoints/last.ckpt`` (written at epoch ends and on
    SIGTERM).
    """
    if not SLURMEnvironment.detect():
        return None
    run_dir = Path(run_dir)
    candidates = [p for p in run_dir.glob("hpc_ckpt_*.ckpt") if HPC_CKPT.fullmatch(p.name)]
    if candidates or int(os.environ.get("SLURM_RESTART_COUNT", "0")) > 0:
        last = run_dir / "checkpoints" / "last.ckpt"
        candidates += [last] if last.is_file() else []
    if not candidates:
        return None
    path = str(max(candidates, key=lambda p: p.stat().st_mtime))
    log.info("Requeued SLURM job: resuming from %s", path)
    return path


def check_sweep_strategy(cfg: DictConfig, plugins: list[ClusterEnvironment] | None) -> None:
    """Refuse Lightning-launched ``ddp`` inside a multirun (each rank would re-run the sweep)."""
    if plugins or not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return
    trainer = cfg.trainer
    single = trainer.get("devices", 1) == 1 and trainer.get("num_nodes", 1) == 1
    if str(trainer.get("strategy", "auto")) != "ddp" or single:
        return
    raise ValueError(
        "trainer.strategy=ddp inside a multirun: Lightning would start every rank by re-running "
        "the command, i.e. the whole sweep (with Optuna each rank would train its own trials). "
        "Use trainer=ddp_sim (ddp_spawn), or let the launcher start the ranks: "
        "hydra/launcher=local_ddp on this machine, hydra/launcher=slurm on a cluster."
    )


def sqlite_storage(path: str) -> str:
    """The Optuna storage URL of an SQLite file, its folder created (SQLite makes no folders).

    ``hparams_search`` presets build it from ``hydra.runtime.cwd``: the sweeper is created before
    ``paths.*`` can be resolved.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{Path(path).resolve()}"
