"""Execution engines for sweeps and Monte Carlo: one interface, three ways to run it.

``map_batches(fn, batches, shared)`` calls ``fn(shared, batch)`` for every batch and yields ``(index, result)``
as batches finish (in any order). ``shared`` is the read-only data every batch needs (prepared price arrays,
simulation inputs): it is shipped once per worker, never per task.

* :class:`InProcessEngine` — this process, one batch after the other (``--workers 1`` without ``--cluster``).
* :class:`PoolEngine` — a pool of ``--workers N`` processes on this machine (``--workers N`` without
  ``--cluster``); the shared data is inherited (fork) or sent to each worker once when it starts (spawn).
* :class:`DaskEngine` — ``dask.distributed``: ``--cluster local`` starts a ``LocalCluster`` of ``--workers N``
  processes with one thread each (``NUMBA_NUM_THREADS=1``), ``--cluster tcp://host:port`` connects to an existing
  scheduler. The same code path for both: the shared data is scattered to every worker
  (``client.scatter(..., broadcast=True)``) and each batch is one task; a task whose worker dies is re-run by
  Dask on another worker, and since every batch is a pure function of its inputs the numbers do not change.

Worker processes never outlive the ``perphedge`` process that started them: pool and local-cluster workers
ask the kernel for ``SIGKILL`` when their parent dies (``PR_SET_PDEATHSIG``, Linux) and run a watchdog thread
that exits when the parent pid changes (every platform).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from perphedge.errors import ConfigError

__all__ = [
    "CONNECT_TIMEOUT_S",
    "DaskEngine",
    "Engine",
    "InProcessEngine",
    "PoolEngine",
    "check_cluster",
    "die_with_parent",
    "make_engine",
]

CONNECT_TIMEOUT_S = 10.0
_PR_SET_PDEATHSIG = 1
_SHARED: dict[str, Any] = {}


def _watch_parent(parent: int) -> None:
    while True:
        if os.getppid() != parent:
            os._exit(1)
        time.sleep(0.5)


def die_with_parent(parent: int) -> None:
    """Make this (worker) process die with ``parent``: ``PR_SET_PDEATHSIG`` (Linux) plus a watchdog thread.

    Ctrl-C reaches the whole foreground process group: the worker ignores SIGINT and leaves it to the parent."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import ctypes.util

            libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - the watchdog still runs
            pass
    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), name="perphedge-parent-watchdog", daemon=True).start()


class Engine(ABC):
    """The interface: ``map_batches`` and ``close`` (also a context manager)."""

    name = "engine"
    workers = 1

    @abstractmethod
    def map_batches(
        self, fn: Callable[[Any, Any], Any], batches: Iterable[Any], shared: Any
    ) -> Iterator[tuple[int, Any]]:
        """``(index, fn(shared, batch))`` for every batch, in any order."""

    def close(self) -> None:  # noqa: B027 - a default no-op, not abstract: in-process has nothing to release
        """Release the workers (nothing to do in-process)."""

    def describe(self) -> dict[str, Any]:
        return {"engine": self.name, "workers": self.workers}

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class InProcessEngine(Engine):
    name = "in-process"

    def map_batches(
        self, fn: Callable[[Any, Any], Any], batches: Iterable[Any], shared: Any
    ) -> Iterator[tuple[int, Any]]:
        for i, batch in enumerate(batches):
            yield i, fn(shared, batch)


def _pool_init(parent: int, fn: Callable[[Any, Any], Any] | None, shared: Any) -> None:
    die_with_parent(parent)
    _single_thread_kernels()
    if fn is not None:  # spawned: the shared data came with the start-up arguments
        _SHARED.update(fn=fn, shared=shared)


def _single_thread_kernels() -> None:
    """One numba thread per worker process (the workers are the parallelism)."""
    try:
        import numba

        numba.set_num_threads(1)
    except (ImportError, ValueError):  # pragma: no cover - numba absent or disabled
        pass


def _pool_call(item: tuple[int, Any]) -> tuple[int, Any]:
    index, batch = item
    return index, _SHARED["fn"](_SHARED["shared"], batch)


class PoolEngine(Engine):
    """``workers`` processes on this machine. ``start="fork"`` (the sweep: its backtest kernels are
    single-threaded) inherits the shared data; ``start="spawn"`` (the Monte Carlo: a fork of a process whose
    numba thread pool has run can deadlock) starts fresh interpreters and sends the shared data once to each."""

    name = "pool"

    def __init__(self, workers: int, start: str = "fork") -> None:
        if start not in ("fork", "spawn"):
            raise ValueError(f"start must be fork or spawn, was {start!r}")
        self.workers = workers
        self.start = start

    def map_batches(
        self, fn: Callable[[Any, Any], Any], batches: Iterable[Any], shared: Any
    ) -> Iterator[tuple[int, Any]]:
        import multiprocessing as mp

        ctx = mp.get_context(self.start)
        if self.start == "fork":
            _SHARED.clear()
            _SHARED.update(fn=fn, shared=shared)
            init: tuple[Any, ...] = (os.getpid(), None, None)
        else:
            init = (os.getpid(), fn, shared)
        try:
            with ctx.Pool(self.workers, initializer=_pool_init, initargs=init) as pool:
                yield from pool.imap_unordered(_pool_call, enumerate(batches))
        finally:
            _SHARED.clear()


_ADDRESS = re.compile(r"(tcp|tls)://(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})")


def check_cluster(cluster: str | None, workers: int | None) -> None:
    """Refuse a bad ``--cluster`` / ``--workers`` before any work."""
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"invalid `--workers`: must be >= 1, was {workers!r}")
    if workers is not None and workers > 1024:
        raise ConfigError(f"invalid `--workers`: at most 1024 worker processes, was {workers}")
    if cluster is None or cluster == "local":
        return
    m = _ADDRESS.fullmatch(cluster)
    if m is None or not 1 <= int(m.group(3)) <= 65535:
        raise ConfigError(
            f"invalid `--cluster`: must be local or a Dask scheduler address such as tcp://host:8786, was {cluster!r}"
        )


def _die_with_parent_plugin(parent: int) -> Any:
    """A Dask worker plugin: the local cluster's worker processes die with the ``perphedge`` process."""
    import importlib

    worker_plugin: Any = importlib.import_module("distributed").WorkerPlugin

    class DieWithParent(worker_plugin):  # type: ignore[misc]
        name = "perphedge-die-with-parent"

        def setup(self, worker: Any) -> None:
            die_with_parent(parent)

    return DieWithParent()


class DaskEngine(Engine):
    """A ``dask.distributed`` client on a new local cluster (``cluster="local"``) or an existing scheduler."""

    name = "dask"

    def __init__(self, cluster: str, workers: int | None = None, timeout: float = CONNECT_TIMEOUT_S) -> None:
        import importlib
        import logging

        check_cluster(cluster, workers)
        dist: Any = importlib.import_module("distributed")
        Client, LocalCluster = dist.Client, dist.LocalCluster  # noqa: N806 - the library's class names

        self.address = cluster
        self.kind = "local" if cluster == "local" else "tcp"
        self._cluster: Any = None
        self.client: Any = None
        # The local workers get NUMBA_NUM_THREADS=1 through LocalCluster's `env` (one numba thread per worker).
        # Never set it in this process: numba refuses a changed NUMBA_NUM_THREADS once its threads have started,
        # so every later compile here would fail.
        try:
            if cluster == "local":
                self.workers = workers or os.cpu_count() or 1
                self._cluster = LocalCluster(
                    n_workers=self.workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    silence_logs=logging.CRITICAL,
                    env={"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
                    timeout=timeout * 3,
                )
                self.client = Client(self._cluster, timeout=timeout)
                self.client.register_plugin(_die_with_parent_plugin(os.getpid()))
                self.address = str(self._cluster.scheduler_address)
            else:
                for name in ("distributed.client", "distributed.core", "distributed.comm", "tornado"):
                    logging.getLogger(name).setLevel(logging.CRITICAL)
                self.client = Client(cluster, timeout=timeout)
                self.workers = len(self.client.scheduler_info().get("workers", {}))
                if self.workers == 0:
                    self.client.wait_for_workers(1, timeout=timeout)
                    self.workers = len(self.client.scheduler_info().get("workers", {}))
        except (OSError, TimeoutError) as exc:
            self.close()
            what = "start a local Dask cluster" if cluster == "local" else f"reach the Dask scheduler at {cluster}"
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConfigError(f"invalid `--cluster`: could not {what} within {timeout:g} s ({reason})") from None
        except Exception as exc:
            self.close()
            reason = (str(exc).splitlines()[0] if str(exc) else type(exc).__name__)[:160]
            raise ConfigError(
                f"invalid `--cluster`: {cluster} did not answer as a Dask scheduler ({type(exc).__name__}: {reason})"
            ) from None

    def describe(self) -> dict[str, Any]:
        return {
            "engine": self.name,
            "workers": self.workers,
            "cluster": "local" if self.kind == "local" else self.address,
        }

    def map_batches(
        self, fn: Callable[[Any, Any], Any], batches: Iterable[Any], shared: Any
    ) -> Iterator[tuple[int, Any]]:
        import importlib

        as_completed: Any = importlib.import_module("distributed").as_completed
        shared_f = self.client.scatter(shared, broadcast=True, hash=False)
        window = max(4, 4 * self.workers)  # bounded: never more than a few tasks per worker in flight
        it = iter(enumerate(batches))
        ac = as_completed([], with_results=True)

        def submit_one() -> bool:
            try:
                i, batch = next(it)
            except StopIteration:
                return False
            fut = self.client.submit(_indexed, fn, shared_f, i, batch, pure=False)
            ac.add(fut)
            return True

        for _ in range(window):
            if not submit_one():
                break
        try:
            for fut, result in ac:
                fut.release()
                yield result
                submit_one()
        finally:
            ac.clear()
            self.client.cancel([shared_f])

    def close(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            with contextlib.suppress(Exception):
                client.close(timeout=5)
        if self._cluster is not None:
            with contextlib.suppress(Exception):
                self._cluster.close(timeout=5)
            self._cluster = None


def _indexed(fn: Callable[[Any, Any], Any], shared: Any, index: int, batch: Any) -> tuple[int, Any]:
    return index, fn(shared, batch)


def make_engine(
    cluster: str | None, workers: int | None, *, default_workers: int | None = None, start: str = "fork"
) -> Engine:
    """The engine for ``--cluster`` / ``--workers``: Dask when a cluster is named, a fork pool for
    ``--workers N > 1``, else this process. ``default_workers`` applies when ``--workers`` is not given
    (None: the machine's cores); ``start`` is the pool's start method (see :class:`PoolEngine`)."""
    check_cluster(cluster, workers)
    if cluster is not None:
        return DaskEngine(cluster, workers)
    n = workers if workers is not None else (default_workers or os.cpu_count() or 1)
    return PoolEngine(n, start) if n > 1 else InProcessEngine()
