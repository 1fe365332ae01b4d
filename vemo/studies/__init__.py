"""Optuna studies of sweeps: their storages and cross-process locks (``storage``), and the one
record each trial leaves (``records``)."""
from vemo.studies.records import (RECORD_ATTR, STALE_REASON, TrialRecord, hydra_value, record_stale_trial,
                                  subset_name, train_command, write_record)
from vemo.studies.storage import (default_storage_url, load_study, mask_url, open_storage, quiet_optuna,
                                  sqlite_path, storage_lock, url_has_password)

__all__ = ["RECORD_ATTR", "STALE_REASON", "TrialRecord", "default_storage_url", "hydra_value", "load_study",
           "mask_url", "open_storage", "quiet_optuna", "record_stale_trial", "sqlite_path", "storage_lock",
           "subset_name", "train_command", "url_has_password", "write_record"]
