"""Where candidate runs execute: in this process, in a local process pool, or as Ray tasks.

Every backend runs :func:`espq.autoquant.runner.run_config` with one torch thread and returns results in
task order, so the same tasks give the same numbers with any backend and any number of workers.
The process pool uses the "spawn" start method (torch is not fork-safe once its thread pool exists);
as with any ``multiprocessing`` code, a script that uses it must guard its entry point with
``if __name__ == "__main__":``.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from espq.autoquant.runner import Context, RunResult, run_config
from espq.autoquant.space import Config
from espq.errors import ConfigError

BACKENDS = ("serial", "process", "ray")
Task = tuple[Config, int, bool]  # (configuration, calibration batches, keep the model)

_WORKER_CONTEXT: Context | None = None


def _init_worker(ctx: Context) -> None:
    global _WORKER_CONTEXT
    _WORKER_CONTEXT = ctx


def _run_in_worker(task: Task) -> RunResult:
    assert _WORKER_CONTEXT is not None, "worker initialiser did not run"
    return run_config(_WORKER_CONTEXT, *task)


class SerialBackend:
    """Runs tasks one after the other in this process."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.runs = 0

    def map(self, tasks: list[Task]) -> list[RunResult]:
        """Results of ``tasks``, in order."""
        self.runs += len(tasks)
        return [run_config(self.ctx, *t) for t in tasks]

    def close(self) -> None:
        """Nothing to release."""


class ProcessBackend(SerialBackend):
    """A local pool of ``workers`` processes; the context is sent once to each (started lazily)."""

    def __init__(self, ctx: Context, workers: int) -> None:
        super().__init__(ctx)
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def map(self, tasks: list[Task]) -> list[RunResult]:
        """Results of ``tasks``, in order (one task per message, so long and short runs balance)."""
        if not tasks:
            return []
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(self.ctx,),
            )
        self.runs += len(tasks)
        return list(self._pool.map(_run_in_worker, tasks))

    def close(self) -> None:
        """Stop the worker processes."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


def _run_remote(ctx: Context, config: Config, batches: int, keep: bool) -> RunResult:
    return run_config(ctx, config, batches, keep)


class RayBackend(SerialBackend):
    """Ray tasks (one CPU each) on the cluster ``ray.init`` connected to; when Ray is not initialised it is
    started locally with ``workers`` CPUs, or connected to ``address``. The context goes to the object store
    once."""

    def __init__(self, ctx: Context, workers: int, address: str | None = None) -> None:
        super().__init__(ctx)
        try:
            import ray
        except ImportError as e:
            raise ConfigError("backend='ray' needs Ray: pip install 'espq[ray]'") from e
        self._ray = ray
        if not ray.is_initialized():
            if address is None:
                ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
            else:
                ray.init(address=address, log_to_driver=False)
        self._ctx_ref = ray.put(ctx)
        self._remote = ray.remote(num_cpus=1)(_run_remote)

    def map(self, tasks: list[Task]) -> list[RunResult]:
        """Results of ``tasks``, in order."""
        self.runs += len(tasks)
        refs = [self._remote.remote(self._ctx_ref, c, b, k) for c, b, k in tasks]
        return list(self._ray.get(refs))


def check_backend(name: str, workers: int) -> None:
    """Raise :class:`ConfigError` for an unknown backend or a bad worker count."""
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be a positive integer, got {workers!r}")


def make_backend(name: str, ctx: Context, workers: int, address: str | None = None) -> Any:
    """The backend called ``name`` ("process" with one worker runs in this process)."""
    check_backend(name, workers)
    if name == "ray":
        return RayBackend(ctx, workers, address)
    if name == "process" and workers > 1:
        return ProcessBackend(ctx, workers)
    return SerialBackend(ctx)


__all__ = ["BACKENDS", "ProcessBackend", "RayBackend", "SerialBackend", "check_backend", "make_backend"]
