"""Forces a Python warning and a log line into any vemo command started with this folder on
PYTHONPATH (the machine-readable output tests): once when the command configures logging (Hydra
does it as the job starts, argparse commands with ``logging.basicConfig``) and once at exit. Where
the command routes warnings and logs, these go too; its stdout must still parse."""
import atexit
import logging
import logging.config
import warnings

MARK = "forced by the test"


def _emit(when: str) -> None:
    warnings.warn(f"a warning {MARK} {when}", UserWarning, stacklevel=2)
    logging.getLogger("vemo.test").warning("a log line %s %s", MARK, when)


def _after(configure):
    def wrapped(*args, **kwargs):
        result = configure(*args, **kwargs)
        _emit("after logging was configured")
        return result
    return wrapped


logging.config.DictConfigurator.configure = _after(logging.config.DictConfigurator.configure)
logging.basicConfig = _after(logging.basicConfig)
atexit.register(_emit, "at exit")
