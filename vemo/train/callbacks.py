"""Lightning callbacks vemo configures by default."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import ModelCheckpoint as _LightningModelCheckpoint


class ModelCheckpoint(_LightningModelCheckpoint):
    """Lightning's ModelCheckpoint, keeping the best checkpoint when a run resumes in a new folder.

    ``python -m vemo.train ckpt_path=...`` starts a new run folder. Lightning then reloads only the
    best checkpoint's path and forgets its score, so the first validation after the resume would
    always become "best". Here the best checkpoint is copied into the new folder and its score kept.
    (Same class name as Lightning's, so checkpoints stay interchangeable.)
    """

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        old_dir = state_dict.get("dirpath")
        if self.dirpath is None or old_dir is None or Path(old_dir) == Path(self.dirpath):
            super().load_state_dict(state_dict)
            return
        old_best = state_dict.get("best_model_path") or ""
        if old_best and Path(old_best).is_file():
            new_best = Path(self.dirpath) / Path(old_best).name
            if self._is_global_zero_or_single():
                new_best.parent.mkdir(parents=True, exist_ok=True)
                if not new_best.exists():
                    shutil.copy2(old_best, new_best)
            score = state_dict.get("best_model_score")
            self.best_model_path = self.kth_best_model_path = str(new_best)
            self.best_model_score = self.kth_value = score
            self.best_k_models = {str(new_best): score} if score is not None else {}
        else:  # the old best file is gone: keep what Lightning would
            super().load_state_dict(state_dict)

    @staticmethod
    def _is_global_zero_or_single() -> bool:
        import torch.distributed as dist
        return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0
