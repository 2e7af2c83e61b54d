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
raised. A worker that dies (killed, out of memory) ends the command within seconds with
ExecutorError: every local worker is killed (the pool notices a death itself, except when the
worker died while sending its result: it would then wait for the rest of the message for ever,
so `LocalWorkers` also watches its workers), nothing is retried (a Ray task neither), and the fits
it took down are retrained by the next run. Workers print nothing: their library warnings go where
the command's go (`library_warnings`), and their progress bars' lock is a thread lock, not a named
semaphore that the resource tracker would report as leaked when a worker is killed.

The command line's ``--workers`` / ``--ray`` reach notebook kernels and worker processes through
``$OSTEO_EXECUTOR`` (`configure` sets it; `current` reads it).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import multiprocessing
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import wait as wait_for_ends
from pathlib import Path
from typing import Any

from . import library_warnings
from .errors import (
    ExecutorError,  # noqa: F401  (raised here, re-exported)
    UsageError,
)
from .threads import THREADS_ENV, available_cores

EXECUTOR_ENV = "OSTEO_EXECUTOR"
#: Ray tasks per GPU by default (each fit gets a quarter of a GPU)
FITS_PER_GPU = 4
#: seconds to wait for a Ray cluster's address to answer before refusing it
CONNECT_TIMEOUT = 5.0
#: seconds between two looks at whether every local worker still lives
WATCH_INTERVAL = 0.5
#: seconds to wait for killed workers, and then for the pool's manager thread, to end
STOP_TIMEOUT = 10.0

log = logging.getLogger(__name__)

Work = Callable[[Any, Any], Any]


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
    from tqdm import tqdm  # deferred: imports tqdm


    os.environ.clear()
    os.environ.update(environ)
    os.chdir(cwd)
    library_warnings.route()
    tqdm.set_lock(threading.RLock())  # not the default multiprocessing lock: a named semaphore of this process

    with counter.get_lock():
        index = counter.value
        counter.value += 1
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C (or a kernel's interrupt) is the parent's to handle
    os.environ["TQDM_DISABLE"] = "1"
    os.environ[THREADS_ENV] = str(max(1, available_cores() // workers))
    if gpus:
        import torch  # deferred: imports torch

        gpu = index % gpus
        sharing = len(range(gpu, workers, gpus))
        torch.cuda.set_device(gpu)
        torch.cuda.set_per_process_memory_fraction(1.0 / sharing, gpu)


def _workers(pool: ProcessPoolExecutor) -> list[Any]:
    """The pool's worker processes (the standard library has no public way to them before Python 3.14)."""
    return list((getattr(pool, "_processes", None) or {}).values())


def _dead_worker(pool: ProcessPoolExecutor) -> str | None:
    """How the first worker that ended ended, or None while they all live (they end only with their pool)."""
    workers = _workers(pool)
    ended = wait_for_ends([w.sentinel for w in workers], timeout=0)
    for worker in workers:
        if worker.sentinel in ended:
            code = worker.exitcode
            how = f"killed by {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
            return f"worker process {worker.pid} ended: {how}"
    return None


def _finished(pool: ProcessPoolExecutor, futures: dict[Future, int]) -> Iterator[Future]:
    """Each future as it finishes; once a worker has died, a future failed with BrokenProcessPool, and no more.

    The pool notices a dead worker itself, except one that died while sending its result: its manager
    thread then waits for the rest of that message for ever, and every other worker for the lock the
    dead one held; so the workers are watched here too."""
    pending = set(futures)
    while pending:
        done, pending = wait(pending, timeout=WATCH_INTERVAL, return_when=FIRST_COMPLETED)
        yield from done
        dead = _dead_worker(pool) if pending else None
        if dead is not None:
            failed: Future = Future()
            failed.set_exception(BrokenProcessPool(dead))
            yield failed
            return


def _kill_workers(pool: ProcessPoolExecutor) -> None:
    """Kill every worker of the pool and let its manager thread end, so that this process can: a manager
    waiting for the rest of a dead worker's result reads the end of the pipe once no worker and not this
    process holds its writing end."""
    workers = _workers(pool)
    for worker in workers:
        try:
            os.kill(worker.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    wait_for_ends([w.sentinel for w in workers], timeout=STOP_TIMEOUT)
    results = getattr(pool, "_result_queue", None)
    if results is not None:
        results._writer.close()
    manager = getattr(pool, "_executor_manager_thread", None)
    if manager is not None and manager is not threading.current_thread():
        manager.join(STOP_TIMEOUT)


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
            import torch  # deferred: imports torch

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
                yield from _drain(futures, _finished(pool, futures), _future_outcome, cancel, BrokenProcessPool)
            except BaseException:  # a dead worker, Ctrl-C, or the caller stopped reading: the rest would be lost
                self.close(terminate=True)  # a broken pool takes no more work; the next run makes a fresh one
                raise
            finally:
                cancel()

        return results()

    def close(self, terminate: bool = False) -> None:
        """Shut the pool down; ``terminate`` also kills the workers, and so the fits still running."""
        if self._pool is None:
            return
        pool, self._pool = self._pool, None
        if terminate:
            _kill_workers(pool)
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


def _raylet_to_log() -> None:
    """Ray prints its raylet's messages (a worker died, a task is retried) on stdout from a thread of its own,
    whatever ``log_to_driver`` says: they become log records of this module instead. Ray keeps the printer
    in a private module; where it has moved, its messages stay on stdout."""
    try:
        from ray._private import worker  # deferred: imports ray
    except ImportError:
        return
    if getattr(worker, "print_to_stdstream", None) is None or getattr(worker.print_to_stdstream, "to_log", False):
        return

    def to_log(data: dict[str, Any], ignore_prefix: bool = False) -> None:
        for line in data.get("lines", []):
            log.warning("(%s) %s", data.get("pid", "ray"), line)

    to_log.to_log = True  # type: ignore[attr-defined]
    worker.print_to_stdstream = to_log


def _ray_call(fn: Work, task: Any, shared: Any, gpu_share: float, cpus: int) -> Any:
    """One fit inside a Ray task: no progress bars, its CPUs as torch threads, its share of the GPU's memory."""
    os.environ["TQDM_DISABLE"] = "1"
    os.environ[THREADS_ENV] = str(cpus)
    if 0 < gpu_share < 1:
        import torch  # deferred: imports torch

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
        """Join (or start) the cluster now; processes started later join the same one. Ray's log records
        go where library warnings go (`library_warnings`), as do its raylet's messages (`_raylet_to_log`)."""
        import ray  # deferred: imports ray

        if not ray.is_initialized():
            package = Path(__file__).resolve().parent
            ray.init(address=None if self.address == "auto" else self.address, log_to_driver=False,
                     configure_logging=False, runtime_env={"py_modules": [str(package)]})
            self.address = ray.get_runtime_context().gcs_address or self.address
        _raylet_to_log()

    def map(self, fn: Work, tasks: Sequence[Any], shared: Any) -> Iterator[tuple[int, Any]]:
        import ray  # deferred: imports ray
        from ray import exceptions  # deferred: imports ray

        self.prepare()
        gpu_share = 1.0 / self.fits_per_gpu if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        remote = ray.remote(_ray_call).options(num_cpus=1, num_gpus=gpu_share, max_retries=0)
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
