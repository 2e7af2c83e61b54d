"""Where independent fits run: in this process, in local worker processes, or as Ray tasks.

A run is planned as fits (arm x fold x repeat, a label permutation, a final model: see
`arms.driver`); each fit is a picklable task. An executor runs a list of tasks and yields each
result as it finishes, so the caller counts progress, saves every finished fold at once and
assembles the tables in the plan's order, whatever order the fits finished in.

- `InProcess` (the default): one fit after another, here; nothing to set up.
- `LocalWorkers(n)`: n worker processes of the standard library's process pool (forked from a
  fork server that imported the package once: CUDA cannot be forked from a process that uses it)
  that share the machine's GPUs round robin, each capped to its share of its GPU's memory and of
  the CPU cores.
- `RayCluster(address)`: each fit a Ray task with a fraction of a GPU (``1 / fits_per_gpu``)
  where the cluster has GPUs. The package travels with the job (Ray's ``py_modules``), so every
  node runs this code. Ray is optional: ``pip install -e ".[ray]"``.

When a fit fails, the fits not yet started are cancelled (on Ray, running ones too), the local
workers' running fits finish and are yielded (so they are saved), then the first error is
raised. A local worker that dies breaks its pool: the fits it took down are retrained by the
next run. Ray retries a fit whose worker died once.

The command line's ``--workers`` / ``--ray`` reach notebook kernels and worker processes through
``$OSTEO_EXECUTOR`` (`configure` sets it; `current` reads it).
"""

from __future__ import annotations

import importlib.util
import json
import multiprocessing
import os
import signal
import socket
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from .config import UsageError

EXECUTOR_ENV = "OSTEO_EXECUTOR"
#: Ray tasks per GPU by default (each fit gets a quarter of a GPU)
FITS_PER_GPU = 4
#: seconds to wait for a Ray cluster's address to answer before refusing it
CONNECT_TIMEOUT = 5.0

Work = Callable[[Any, Any], Any]


class ExecutorError(RuntimeError):
    """Fits could not run to the end (a worker died, the cluster went away); finished folds are kept."""


class Executor:
    """Runs ``fn(task, shared)`` for every task; yields ``(index, result)`` as each one finishes."""

    #: whether fits may run side by side (cheap fits then stay in the calling process)
    parallel = False

    def map(self, fn: Work, tasks: Sequence[Any], shared: Any) -> Iterator[tuple[int, Any]]:
        raise NotImplementedError

    def spec(self) -> dict[str, Any]:
        """What `from_spec` needs to rebuild this executor in another process."""
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def prepare(self) -> None:
        """Set up what other processes will join (Ray: start or join the cluster); nothing by default."""


class InProcess(Executor):
    """One fit after another in this process: the default, and what every run did before."""

    def map(self, fn: Work, tasks: Sequence[Any], shared: Any) -> Iterator[tuple[int, Any]]:
        for i, task in enumerate(tasks):
            yield i, fn(task, shared)

    def spec(self) -> dict[str, Any]:
        return {"kind": "inprocess"}

    def describe(self) -> str:
        return "in-process"


def _drain(futures: dict[Any, int], done: Iterator[Any], outcome: Callable[[Any], Any],
           cancel: Callable[[], None], broken: type[BaseException] | tuple = ()) -> Iterator[tuple[int, Any]]:
    """Yield every finished task's result; after the first failure cancel what has not started, keep
    yielding what finishes, then raise that failure (a broken pool or cluster as ExecutorError)."""
    error: Exception | None = None
    for handle in done:
        try:
            result = outcome(handle)
        except Exception as exc:  # re-raised below, once the fits still running have finished and been yielded
            if error is None:
                error = exc
                cancel()
            continue
        if result is not _CANCELLED:
            yield futures[handle], result
    if error is not None:
        if broken and isinstance(error, broken):
            raise ExecutorError("a worker died while fitting (killed, or out of memory?): every fit that finished "
                                f"is saved; run the command again to train the others ({error})") from error
        raise error


_CANCELLED = object()


def _future_outcome(future: Future) -> Any:
    return _CANCELLED if future.cancelled() else future.result()


def _init_worker(counter: Any, workers: int, gpus: int, environ: dict[str, str], cwd: str) -> None:
    """A local worker: the environment and folder of the process that made the pool now (a fork server's
    child has the server's, from when it started); no progress bars; its share of the cores; on a GPU
    machine its GPU (round robin) and that GPU's memory shared with the other workers on it."""
    from .training import THREADS_ENV, available_cores

    os.environ.clear()
    os.environ.update(environ)
    os.chdir(cwd)

    with counter.get_lock():
        index = counter.value
        counter.value += 1
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C (or a kernel's interrupt) is the parent's to handle
    os.environ["TQDM_DISABLE"] = "1"
    os.environ[THREADS_ENV] = str(max(1, available_cores() // workers))
    if gpus:
        import torch

        gpu = index % gpus
        sharing = len(range(gpu, workers, gpus))
        torch.cuda.set_device(gpu)
        torch.cuda.set_per_process_memory_fraction(1.0 / sharing, gpu)


def worker_context() -> multiprocessing.context.BaseContext:
    """How local workers start: forked from a fork server that imported the package once (a worker then
    starts in a fraction of a second instead of importing torch again, several seconds each); spawned
    where there is no fork server (Windows). Never forked from this process: CUDA cannot be forked, and
    the fork server never touches CUDA."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([f"{__package__}.arms"])  # no effect once the server runs: it has them
    return context


class LocalWorkers(Executor):
    """``workers`` processes on this machine; several fits share a GPU, each with its share of its memory."""

    parallel = True

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise UsageError(f"--workers: {workers} is not allowed (must be >= 1)")
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            import torch

            context = worker_context()
            gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
            here = (dict(os.environ), os.getcwd())
            self._pool = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_init_worker,
                                             initargs=(context.Value("i", 0), self.workers, gpus, *here))
        return self._pool

    def map(self, fn: Work, tasks: Sequence[Any], shared: Any) -> Iterator[tuple[int, Any]]:
        pool = self._executor()
        futures = {pool.submit(fn, task, shared): i for i, task in enumerate(tasks)}  # submitted now, not on demand

        def cancel() -> None:
            for future in futures:
                future.cancel()

        def results() -> Iterator[tuple[int, Any]]:
            try:
                yield from _drain(futures, as_completed(futures), _future_outcome, cancel, BrokenProcessPool)
            except ExecutorError:
                self.close()  # a broken pool takes no more work; the next run makes a fresh one
                raise
            except BaseException:  # Ctrl-C, or the caller stopped reading: what still runs would be lost anyway
                self.close(terminate=True)
                raise
            finally:
                cancel()

        return results()

    def close(self, terminate: bool = False) -> None:
        """Shut the pool down; ``terminate`` also stops the fits still running."""
        if self._pool is None:
            return
        pool, self._pool = self._pool, None
        if terminate:  # the standard library has no public way before Python 3.14 (terminate_workers)
            stop = getattr(pool, "terminate_workers", None)
            if stop is not None:
                stop()
            else:
                for process in list((getattr(pool, "_processes", None) or {}).values()):
                    process.terminate()
        pool.shutdown(wait=False, cancel_futures=True)

    def spec(self) -> dict[str, Any]:
        return {"kind": "workers", "workers": self.workers}

    def describe(self) -> str:
        return f"{self.workers} local worker{'s' if self.workers > 1 else ''}"


def ray_installed() -> bool:
    return importlib.util.find_spec("ray") is not None


def _host_port(address: str) -> tuple[str, int] | None:
    """``host:port`` of a Ray address (``ray://host:port`` too); None when it has no port."""
    rest = address.split("://", 1)[-1]
    host, sep, port = rest.rpartition(":")
    return (host.strip("[]"), int(port)) if sep and host and port.isdigit() else None


def check_ray_address(address: str) -> None:
    """UsageError, in one line and within seconds, when nothing answers at a Ray address (Ray itself
    keeps retrying for minutes)."""
    target = _host_port(address)
    if target is None:
        raise UsageError(f"--ray {address}: not an address; give HOST:PORT of the cluster's head (e.g. "
                         "192.168.1.5:6379) or auto")
    try:
        socket.create_connection(target, timeout=CONNECT_TIMEOUT).close()
    except OSError as exc:
        raise UsageError(f"--ray {address}: no Ray cluster answers there ({exc.strerror or exc})") from None


def _ray_call(fn: Work, task: Any, shared: Any, gpu_share: float, cpus: int) -> Any:
    """One fit inside a Ray task: no progress bars, its CPUs as torch threads, its share of the GPU's memory."""
    from .training import THREADS_ENV

    os.environ["TQDM_DISABLE"] = "1"
    os.environ[THREADS_ENV] = str(cpus)
    if 0 < gpu_share < 1:
        import torch

        if torch.cuda.is_available():
            torch.cuda.set_per_process_memory_fraction(gpu_share)
    return fn(task, shared)


class RayCluster(Executor):
    """Each fit a Ray task. ``address``: ``auto`` joins the cluster of ``$RAY_ADDRESS`` or starts a Ray
    instance on this machine; otherwise the head's HOST:PORT (or ``ray://HOST:PORT``)."""

    parallel = True

    def __init__(self, address: str = "auto", fits_per_gpu: int = FITS_PER_GPU) -> None:
        if not ray_installed():
            raise UsageError("--ray: Ray is not installed; install the extra with pip install -e \".[ray]\"")
        if fits_per_gpu < 1:
            raise UsageError(f"--fits-per-gpu: {fits_per_gpu} is not allowed (must be >= 1)")
        self.address = address
        self.fits_per_gpu = fits_per_gpu
        given = os.environ.get("RAY_ADDRESS") if address == "auto" else address
        if given and given != "auto":
            check_ray_address(given)

    def prepare(self) -> None:
        """Join (or start) the cluster now; processes started later join the same one."""
        import ray

        if not ray.is_initialized():
            package = Path(__file__).resolve().parent
            ray.init(address=None if self.address == "auto" else self.address, log_to_driver=False,
                     runtime_env={"py_modules": [str(package)]})
            self.address = ray.get_runtime_context().gcs_address or self.address

    def map(self, fn: Work, tasks: Sequence[Any], shared: Any) -> Iterator[tuple[int, Any]]:
        import ray
        from ray import exceptions

        self.prepare()
        gpu_share = 1.0 / self.fits_per_gpu if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        remote = ray.remote(_ray_call).options(num_cpus=1, num_gpus=gpu_share, max_retries=1)
        shared_ref = ray.put(shared)
        refs = {remote.remote(fn, task, shared_ref, gpu_share, 1): i for i, task in enumerate(tasks)}
        pending = list(refs)
        broken = (exceptions.WorkerCrashedError, exceptions.NodeDiedError, exceptions.RaySystemError,
                  exceptions.ObjectLostError, exceptions.OwnerDiedError)

        def finished() -> Iterator[Any]:
            nonlocal pending
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                yield done[0]

        def outcome(ref: Any) -> Any:
            try:
                return ray.get(ref)
            except exceptions.TaskCancelledError:
                return _CANCELLED
            except exceptions.RayTaskError as exc:  # the fit raised: its own error, as in-process
                raise (exc.cause if isinstance(exc.cause, Exception) else exc.as_instanceof_cause()) from None

        def cancel() -> None:
            for ref in pending:
                ray.cancel(ref)

        def results() -> Iterator[tuple[int, Any]]:
            try:
                yield from _drain(refs, finished(), outcome, cancel, broken)
            finally:
                cancel()

        return results()

    def spec(self) -> dict[str, Any]:
        return {"kind": "ray", "address": self.address, "fits_per_gpu": self.fits_per_gpu}

    def describe(self) -> str:
        return f"Ray cluster {self.address} ({self.fits_per_gpu} fits per GPU)"


def from_options(workers: int | None = None, ray: str | None = None, fits_per_gpu: int | None = None) -> Executor:
    """The executor the command-line options ask for (UsageError, one line, before any work)."""
    if workers is not None and ray is not None:
        raise UsageError("--workers and --ray: choose one (local worker processes, or a Ray cluster)")
    if fits_per_gpu is not None and ray is None:
        raise UsageError("--fits-per-gpu: only with --ray (local workers share the GPUs round robin)")
    if ray is not None:
        return RayCluster(ray, fits_per_gpu or FITS_PER_GPU)
    if workers is not None:
        return LocalWorkers(workers)
    return InProcess()


def from_spec(spec: dict[str, Any]) -> Executor:
    kind = spec.get("kind")
    if kind == "workers":
        return LocalWorkers(int(spec["workers"]))
    if kind == "ray":
        return RayCluster(str(spec["address"]), int(spec.get("fits_per_gpu", FITS_PER_GPU)))
    return InProcess()


_current: tuple[str, Executor] | None = None


def configure(executor: Executor) -> Executor:
    """Make ``executor`` the one every fit of this process uses, and pass it to the notebook kernels
    and processes started from here (``$OSTEO_EXECUTOR``)."""
    global _current
    executor.prepare()
    text = json.dumps(executor.spec())
    os.environ[EXECUTOR_ENV] = text
    _current = (text, executor)
    return executor


def current() -> Executor:
    """The executor of this process: the one `configure` set or ``$OSTEO_EXECUTOR`` names, else in-process.

    A worker process runs its fits itself (in-process), whatever its parent uses.
    """
    global _current
    if multiprocessing.parent_process() is not None and _current is None:
        return InProcess()
    text = os.environ.get(EXECUTOR_ENV, "")
    if _current is None or _current[0] != text:
        try:
            spec = json.loads(text) if text else {}
        except json.JSONDecodeError:
            raise UsageError(f"${EXECUTOR_ENV}: {text!r} is not an executor spec") from None
        _current = (text, from_spec(spec if isinstance(spec, dict) else {}))
    return _current[1]
