"""Worker processes: ``n_jobs=1`` runs the worker in this process, ``n_jobs=N`` spawns N of them.

A stop signal to the main process is passed on to every worker (each records its running trial as
interrupted and exits 128 + the signal); workers that do not stop within ``STOP_WAIT_S`` are
killed. A worker dies with the main process (Linux: the parent-death signal is SIGTERM), so no
worker runs on as an orphan when the main process is killed outright. Trials of a worker that died
(killed, out of memory) are failed as soon as it is gone instead of after ``grace_period``, so the
other workers (or the next start) run them again and the report does not show them running.
"""
from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import time
from typing import Any, Iterator

from vemo.errors import VemoError
from vemo.sweep.signals import Interrupted, deferred_signals, signal_name, stop_signals
from vemo.sweep.worker import Worker, fail_trials_of, worker_label

log = logging.getLogger("vemo.sweep")

STOP_WAIT_S = 60.0        # how long a stopped worker may take to record its trial before it is killed
STOPPED_CODES = {128 + signal.SIGINT: signal.SIGINT, 128 + signal.SIGTERM: signal.SIGTERM,
                 -signal.SIGINT: signal.SIGINT, -signal.SIGTERM: signal.SIGTERM}
PR_SET_PDEATHSIG = 1


class WorkerError(VemoError, RuntimeError):
    """A worker process died; its trials are failed and rerun on the next start."""


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def set_threads(threads: int | None) -> None:
    if threads:
        import torch
        torch.set_num_threads(int(threads))
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(int(threads))


def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to send this process SIGTERM when its parent dies; stop now if it is gone already."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:
        raise Interrupted(signal.SIGTERM, "the sweep's main process is gone")


def _worker_process(s: dict[str, Any], invocation: str, index: int, threads: int, parent_pid: int) -> None:
    """Entry point of a spawned worker process; exits 128 + signal when stopped, 1 on an error."""
    logging.basicConfig(level=logging.INFO, format=f"[%(asctime)s][w{index}][%(name)s] %(message)s")
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with stop_signals():
        try:
            _die_with_parent(parent_pid)
            set_threads(threads)
            Worker(s, invocation, index).run()
        except Interrupted as e:
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            sys.exit(128 + signal.SIGINT)
        except Exception as e:  # noqa: BLE001 - one line, as every vemo command reports errors
            from vemo.cli import report
            sys.exit(report(e))


@contextlib.contextmanager
def _thread_env(threads: int) -> Iterator[None]:
    """OMP/MKL thread counts for the processes started in the block (read when torch starts)."""
    saved = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _stop_workers(procs: list, signum: int) -> list:
    """Pass ``signum`` on to the live workers and wait for them; kill those that do not stop.
    Returns the killed ones."""
    for p in procs:
        if p.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signum)
    deadline = time.time() + STOP_WAIT_S
    for p in procs:
        p.join(timeout=max(0.0, deadline - time.time()))
    killed = [p for p in procs if p.is_alive()]
    for p in killed:
        log.warning("worker %s did not stop within %.0fs of %s: killing it", p.name, STOP_WAIT_S, signal_name(signum))
        p.kill()
        p.join(timeout=10)
    return killed


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        return f"killed by {name}" + (" (out of memory?)" if -code == signal.SIGKILL else "")
    return f"exited with code {code}"


def _fail_trials_of_worker(s: dict[str, Any], index: int, p, reason: str, interrupted: bool) -> None:
    try:
        numbers = fail_trials_of(s, worker_label(index, p.pid), reason, interrupted=interrupted)
    except Exception as e:  # noqa: BLE001 - the heartbeat check fails them later anyway
        log.warning("could not fail the trials of %s: %s", p.name, e)
        return
    if numbers:
        log.warning("trial(s) %s of %s: %s", numbers, p.name, reason)


def _wait(s: dict[str, Any], procs: list) -> list[str]:
    """Wait for every worker; fail the trials of one that dies at once, so that the others can run them
    again. Returns what happened to the dead ones."""
    dead, running = [], dict(enumerate(procs))
    while running:
        multiprocessing.connection.wait([p.sentinel for p in running.values()])
        for i, p in list(running.items()):
            if p.is_alive():
                continue
            p.join()
            del running[i]
            if p.exitcode == 0 or p.exitcode in STOPPED_CODES:
                continue
            what = _describe_exit(p.exitcode)
            dead.append(f"{p.name} (pid {p.pid}) {what}")
            _fail_trials_of_worker(s, i, p, f"its worker process {what}; run again by another worker or on the "
                                            "next start", interrupted=False)
    return dead


def run_workers(s: dict[str, Any], invocation: str) -> None:
    """Run the sweep's workers until no trial is left. Raises ``Interrupted`` when a stop signal
    stopped them (after every worker recorded its trial) and ``WorkerError`` when one died and left
    work undone."""
    n = s["n_jobs"]
    threads = s.get("threads_per_job") or max(1, cpu_count() // n)
    if n == 1:
        if s.get("threads_per_job"):
            set_threads(threads)
        Worker(s, invocation).run()
        return
    log.info("%d worker processes, %d thread(s) each", n, threads)
    if n > cpu_count():
        log.warning("n_jobs=%d is more than the %d CPU cores here: the trials will slow each other down", n, cpu_count())
    ctx = multiprocessing.get_context("spawn")
    procs: list = []
    try:
        with deferred_signals(), _thread_env(threads):  # a stop signal now would miss a worker being started
            for i in range(n):
                p = ctx.Process(target=_worker_process, args=(s, invocation, i, threads, os.getpid()),
                                name=f"vemo-sweep-w{i}")
                p.start()
                procs.append(p)
        dead = _wait(s, procs)
    except KeyboardInterrupt as e:  # a stop signal to this process: every worker records its trial, then stops
        stop = e if isinstance(e, Interrupted) else Interrupted(signal.SIGINT)
        for p in _stop_workers(procs, stop.signum):
            _fail_trials_of_worker(s, procs.index(p), p, f"interrupted ({signal_name(stop.signum)}); its worker did "
                                                         "not stop in time and was killed", interrupted=True)
        raise stop
    stopped = [STOPPED_CODES[p.exitcode] for p in procs if p.exitcode in STOPPED_CODES]
    if stopped:  # a worker was stopped by a signal of its own: the sweep is unfinished
        raise Interrupted(stopped[0], f"a worker was stopped by {signal_name(stopped[0])}")
    if dead:
        left = _remaining(s, invocation)
        if left:
            raise WorkerError(f"worker {'; '.join(dead)}; {left} trial(s) left to run: run the same command again "
                              "(a worker's own errors are printed above)")
        log.warning("worker %s; the other workers ran its trials again", "; ".join(dead))


def _remaining(s: dict[str, Any], invocation: str) -> int:
    import optuna

    from vemo.sweep.storage import open_storage
    from vemo.sweep.plans import make_plan
    study = optuna.load_study(study_name=s["study_name"], storage=open_storage(s["storage"]))
    return make_plan(s, invocation).remaining(study)
