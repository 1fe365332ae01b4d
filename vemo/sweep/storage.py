"""Optuna study storages shared by ``vemo.sweep`` and ``vemo.report``: URLs, opening, locks.

A sweep is an Optuna study in an RDB storage: by default a SQLite file in the sweep folder, or any
Optuna RDB URL (``postgresql://user@host/db``) that several worker processes or machines share.
This module opens such storages so that concurrent workers are safe, and provides
``storage_lock``, a storage-wide mutex that makes "look at the study, then claim the next trial"
atomic across processes and machines (a file lock for SQLite, an advisory lock for PostgreSQL,
``GET_LOCK`` for MySQL).
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
import warnings
import zlib
from pathlib import Path
from typing import Callable, Iterator

import optuna
import sqlalchemy
from optuna.storages import RDBStorage

from vemo.errors import ConfigError

log = logging.getLogger("vemo.sweep")

SQLITE_TIMEOUT_S = 600  # how long a writer waits for another process's transaction


def default_storage_url(sweep_dir: str | Path) -> str:
    return f"sqlite:///{(Path(sweep_dir) / 'study.db').resolve()}"


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (for files and logs)."""
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy understands: say nothing about it
        return url


def url_has_password(url: str) -> bool:
    try:
        return sqlalchemy.engine.make_url(url).password is not None
    except Exception:
        return False


def sqlite_path(url: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL (None for other URLs and in-memory SQLite)."""
    parsed = sqlalchemy.engine.make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between processes on this machine (fcntl.flock on ``path``)."""
    try:
        import fcntl
    except ImportError:  # Windows: one process per sweep folder, then
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _serialize_sqlite_transactions(engine: sqlalchemy.engine.Engine) -> None:
    """Make every SQLite transaction ``BEGIN IMMEDIATE``.

    With SQLite's default deferred transactions, two processes that both read and then write
    deadlock, and SQLite answers one of them at once with 'database is locked' instead of
    waiting. Taking the write lock when the transaction begins makes writers queue up instead
    (each waits up to ``SQLITE_TIMEOUT_S``).
    """
    @sqlalchemy.event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection, _record):  # pysqlite would emit its own BEGIN
        dbapi_connection.isolation_level = None

    @sqlalchemy.event.listens_for(engine, "begin")
    def _begin_immediate(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections opened before the listeners existed are dropped


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Silences Optuna's notes about the heartbeat being experimental and meant for Study.optimize:
    vemo runs the heartbeat itself."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message=r"Heartbeat of storage is supposed to be used with Study\.optimize")
        yield


StaleCallback = Callable[[optuna.Study, optuna.trial.FrozenTrial], None]


def open_storage(url: str, heartbeat_interval: int | None = None, grace_period: int | None = None,
                 on_stale: StaleCallback | None = None) -> RDBStorage:
    """An Optuna RDBStorage for ``url``, safe for several worker processes.

    ``heartbeat_interval``: seconds between a running trial's heartbeats; a RUNNING trial whose
    heartbeat stops for ``grace_period`` seconds (its worker was killed) is marked FAIL by
    ``optuna.storages.fail_stale_trials``, which then calls ``on_stale(study, trial)``.
    A URL that cannot be opened raises ``ConfigError`` naming it (password masked).
    """
    try:
        with quiet_optuna():
            return _open_storage(url, heartbeat_interval, grace_period, on_stale)
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError, OSError) as e:
        reason = " ".join(str(e).split("\n")[0].split())
        raise ConfigError(f"storage {mask_url(url)} cannot be opened: {type(e).__name__}: {reason}") from e


def _open_storage(url: str, heartbeat_interval: int | None, grace_period: int | None,
                  on_stale: StaleCallback | None) -> RDBStorage:
    path = sqlite_path(url)
    kwargs = dict(heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                  heartbeat_stale_trial_callback=on_stale)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(path.with_name(path.name + ".lock")):  # table creation is not safe to race
            storage = RDBStorage(url, engine_kwargs={"connect_args": {"timeout": SQLITE_TIMEOUT_S}}, **kwargs)
        _serialize_sqlite_transactions(storage.engine)
        return storage
    engine_kwargs = {"pool_pre_ping": True} if not url.startswith("sqlite") else {}
    for attempt in range(5):  # several machines creating the tables at once may collide
        try:
            return RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            if attempt == 4:
                raise
            time.sleep(0.5 + attempt)
    raise AssertionError("unreachable")


_THREAD_LOCK = threading.Lock()


@contextlib.contextmanager
def storage_lock(storage: RDBStorage, study_name: str) -> Iterator[None]:
    """A mutex held by one worker at a time across every process and machine sharing the study."""
    dialect = storage.engine.dialect.name
    path = sqlite_path(storage.url)
    if path is not None:
        with _THREAD_LOCK, file_lock(path.with_name(path.name + ".lock")):
            yield
        return
    key = zlib.crc32(f"vemo-sweep:{study_name}".encode())  # fits PostgreSQL's bigint
    if dialect == "postgresql":
        with _THREAD_LOCK, storage.engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
        return
    if dialect in ("mysql", "mariadb"):
        with _THREAD_LOCK, storage.engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT GET_LOCK(:k, -1)"), {"k": f"vemo-sweep-{key}"})
            try:
                yield
            finally:
                conn.execute(sqlalchemy.text("SELECT RELEASE_LOCK(:k)"), {"k": f"vemo-sweep-{key}"})
        return
    log.warning("no cross-process lock for %s storages: run one worker per study", dialect)
    with _THREAD_LOCK:
        yield


def load_study(storage: str | RDBStorage, study_name: str | None = None) -> optuna.Study:
    """Load ``study_name`` (or the only study in the storage); ``ConfigError`` when there is no such
    study or, without a name, not exactly one."""
    if isinstance(storage, str):
        storage = open_storage(storage)
    names = optuna.study.get_all_study_names(storage)
    where = mask_url(storage.url)
    if study_name is None:
        if len(names) != 1:
            listed = f" ({', '.join(names)})" if names else ""
            raise ConfigError(f"the storage {where} holds {len(names)} studies{listed}: name one with --study")
        study_name = names[0]
    elif study_name not in names:
        raise ConfigError(f"study {study_name!r}: the storage {where} holds no such study; "
                          f"it holds: {', '.join(names) or 'none'}")
    return optuna.load_study(study_name=study_name, storage=storage)
