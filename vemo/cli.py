"""What every vemo command does with mistakes: one line on stderr, an exit code, no traceback.

    error: data.batch_size must be a positive integer, got 0

A user error (``VemoError``, a bad override, a missing mandatory option) exits 1, or 2 for a command
line that does not parse. Anything else is reported as unexpected, also in one line, with where to
find the traceback. The full traceback always goes to the command's log files (a run folder's
``train.log``); ``VEMO_DEBUG=1`` or ``hydra.verbose=true`` also prints it.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import traceback
from typing import Callable, Iterator, NoReturn, Sequence

from vemo.errors import VemoError, first_line


def debug_requested() -> bool:
    """``VEMO_DEBUG=1`` in the environment, or ``hydra.verbose`` (in a Hydra run or on the command line)."""
    if os.environ.get("VEMO_DEBUG", "").strip() not in ("", "0", "false", "no"):
        return True
    try:
        from hydra.core.hydra_config import HydraConfig
        if HydraConfig.initialized():
            return bool(HydraConfig.get().verbose)
    except Exception:  # outside a Hydra run
        pass
    # before Hydra has composed anything (a bad override): read the command line itself
    values = [a.split("=", 1)[1] for a in sys.argv[1:] if a.lstrip("+").startswith("hydra.verbose=")]
    return any(v.strip().lower() not in ("false", "null", "[]", "") for v in values)


def root_error(exc: BaseException) -> BaseException:
    """The error underneath Hydra's wrappers (``instantiate`` reports the constructor's error as its cause)."""
    from hydra.errors import InstantiationException
    seen = set()
    while isinstance(exc, InstantiationException) and exc.__cause__ is not None and id(exc) not in seen:
        seen.add(id(exc))
        exc = exc.__cause__
    return exc


def describe(exc: BaseException) -> tuple[str, int, bool]:
    """(one-line message, exit code, whether it is a user error) for an exception."""
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
    from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

    exc = root_error(exc)
    if isinstance(exc, VemoError):
        return one_line(str(exc)), exc.exit_code, True
    if isinstance(exc, OverrideParseException):
        reason = first_line(str(exc.message or "")) or "it does not parse"
        return one_line(f"cannot parse the override {exc.override!r}: {reason} "
                        "(quote lists and strings as Hydra's override grammar says)"), 2, True
    if isinstance(exc, MissingConfigException):
        missing = str(exc.missing_cfg_file or "")
        if "/" in missing and exc.options:
            group, option = missing.rsplit("/", 1)
            return (f"{group}={option}: there is no such {group} config; choose one of: "
                    f"{', '.join(exc.options)}"), 2, True
        return one_line(str(exc)), 2, True
    if isinstance(exc, ConfigCompositionException):
        text = str(exc)
        if text.startswith("Could not override '") and "use +" in text:  # a key the config does not have
            key = text.split("'")[1]
            return (f"{key} is not an option of this command's config (a typo?); to add a new key anyway, "
                    f"write +{text.rsplit('use +', 1)[1].strip()}"), 2, True
        return one_line(text), 2, True
    if isinstance(exc, MissingMandatoryValue):
        key = getattr(exc, "full_key", None) or "an option"
        return f"{key} is required and has no default: give it on the command line ({key}=...)", 1, True
    if isinstance(exc, OmegaConfBaseException):
        key = getattr(exc, "full_key", None)
        first = first_line(exc)
        return one_line(f"{key}: {first}" if key and key not in first else first), 1, True
    torch = sys.modules.get("torch")  # never imported just to classify an error
    if torch is not None and isinstance(exc, torch.OutOfMemoryError):
        return ("out of memory on the device: lower data.batch_size or data.max_len, or model.d_model"), 1, True
    return one_line(f"unexpected {type(exc).__name__}: {exc}"), 1, False


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def log_to_files(message: str, exc: BaseException) -> list[str]:
    """Write ``message`` with the traceback to the root logger's log files only (not the console)."""
    record = logging.LogRecord("vemo", logging.ERROR, __file__, 0, "%s", (message,), None)
    record.exc_info = (type(exc), exc, exc.__traceback__)
    files = []
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
            files.append(handler.baseFilename)
    return files


def report(exc: BaseException) -> int:
    """Print ``exc`` as one ``error:`` line (and log it); returns the exit code."""
    message, code, user_error = describe(exc)
    files = log_to_files(message, exc)
    if debug_requested():
        traceback.print_exception(exc, file=sys.stderr)
    elif not user_error:
        where = f"the traceback is in {files[0]}; " if files else ""
        message += f" ({where}run with VEMO_DEBUG=1 to print the traceback)"
    print(f"error: {message}", file=sys.stderr, flush=True)
    return code


@contextlib.contextmanager
def reported_errors() -> Iterator[None]:
    """Turns an exception raised in the block into one ``error:`` line and ``SystemExit``."""
    try:
        yield
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as e:  # noqa: BLE001 - every error ends as one line and an exit code
        raise SystemExit(report(e)) from None


def one_console_for_lightning() -> None:
    """Importing ``lightning`` gives its logger a console handler of its own, while its lines also reach
    the root logger's handlers that vemo's commands configure (stderr and the log file): each would be
    printed twice. Call after importing Lightning: its own console handler goes, the root's stay."""
    if not logging.getLogger().handlers:
        return
    lightning_logger = logging.getLogger("lightning")
    for handler in list(lightning_logger.handlers):
        if type(handler) is logging.StreamHandler:
            lightning_logger.removeHandler(handler)


HYDRA_INFO_FLAGS = ("-h", "--help", "--hydra-help", "--cfg", "-c", "--info")


def given_keys(argv: Sequence[str]) -> set[str] | None:
    """The option names a command line sets (``key=value``), or None when it asks Hydra for help or
    the config (then required options need not be given)."""
    if any(a.startswith(HYDRA_INFO_FLAGS) for a in argv):
        return None
    return {a.split("=", 1)[0].lstrip("+~") for a in argv if "=" in a}


def check_overrides(config_name: str, argv: Sequence[str]) -> None:
    """Compose ``config_name`` with the command line's overrides, as Hydra is about to.

    A mistake in the command line then ends as one line (exit 2) instead of Hydra's report, and
    before Hydra creates a run folder. Command lines with Hydra flags (``--help``, ``--cfg``,
    ``-m``) are left to Hydra.
    """
    if any(a.startswith("-") for a in argv):  # Hydra's own flags: --help, --cfg, -m, ...
        return
    from vemo.config import load_config
    with reported_errors():
        load_config(list(argv), config_name=config_name)


def exit_now(code: object = 0) -> NoReturn:
    """End a command that has written everything: run the exit handlers, flush the streams and the
    log files, then leave without the rest of the interpreter's teardown (freeing every module and
    object, which for a process holding torch, onnxruntime and CTranslate2 models takes over a
    second and writes nothing). ``code`` as ``SystemExit`` takes it."""
    import atexit

    if isinstance(code, str):
        print(code, file=sys.stderr)
        code = 1
    status = 0 if code is None else int(code)  # type: ignore[call-overload]
    atexit._run_exitfuncs()  # what libraries (and users) registered still runs, as on a normal exit
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be written anyway
            pass
    logging.shutdown()
    os._exit(status)


def run_command(hydra_main: Callable[[], object], config_name: str, argv: Sequence[str] | None = None) -> None:
    """Start a Hydra entry point after checking its command line (see ``check_overrides``)."""
    check_overrides(config_name, sys.argv[1:] if argv is None else argv)
    hydra_main()
