"""VideoClassifier: standardization -> per-modality projection -> fusion head (from the registry) -> classifier.

A checkpoint of this module predicts on its own: besides the weights it holds the training split's
normalization statistics (buffers), the class names, the label kind, each modality's dim and the
settings of the extractor that made it, and the preprocessing rule (``max_len``, subsampling).
"""
from __future__ import annotations

import math
import random
from typing import Any, Mapping, Sequence

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric, SumMetric
from torchmetrics.classification import MulticlassConfusionMatrix

from vemo.errors import ConfigError, TrainingError
from vemo.network import CHECKPOINT_FORMAT, FORMAT_KEY, FusionNetwork, check_checkpoint_format
from vemo.train.metrics import per_class_f1, scalar_metrics


class VideoClassifier(L.LightningModule):
    """Classifies a batch (see the batch contract in docs/architecture.md) into ``len(classes)`` classes.

    Per-modality projection (Linear + LayerNorm to ``d_model``) -> fusion head -> classifier MLP.

    Args:
        modality_dims: input feature size per modality, e.g. ``{"frames": 512, "audio": 768}``.
        classes: class names, in label-index order.
        fusion: fusion config: ``name`` of a registered head plus its options.
        classifier_hidden, classifier_dropout: the MLP that maps the fused vector to class logits
            (``classifier_hidden=0``: one linear layer, the published classifiers' layout).
        proj_norm: a LayerNorm after each modality's projection (off in the published classifiers).
        zeroshot_prior: add the zero-shot model's log-probabilities (from the ``affect`` modality) to the
            logits, the classifier starting at zero: training starts from the experts' answer.
        multilabel: BCE over independent classes instead of softmax cross-entropy.
        class_weights: ``None``, ``"balanced"`` (inverse training frequency; pass ``class_counts``)
            or one weight per class.
        warmup_frac: share of the optimizer steps spent warming the learning rate up linearly,
            before cosine decay to ``min_lr_ratio * lr``.
        preprocessing: what the data pipeline did before the model: ``max_len`` per modality,
            the ``subsample`` rule and whether ``normalize`` was on (prediction repeats it).
        feature_specs: per modality, the feature store's manifest entry (dim, kind, dtype and
            the extractor with its settings), so prediction extracts features the same way.
        extract_profile: the extraction profile the store was made with (e.g. ``offline``).

    The normalization statistics are set with ``set_normalization`` (train does it from the
    DataModule) and saved with the weights; ``forward`` takes raw, unstandardized features.
    """

    def __init__(self, modality_dims: Mapping[str, int], classes: Sequence[str], fusion: Mapping[str, Any],
                 multilabel: bool = False, d_model: int = 128, proj_dropout: float = 0.1,
                 classifier_hidden: int = 256, classifier_dropout: float = 0.1, lr: float = 1e-3,
                 weight_decay: float = 0.05, warmup_frac: float = 0.05, min_lr_ratio: float = 0.01,
                 label_smoothing: float = 0.0, class_weights: str | Sequence[float] | None = None,
                 class_counts: Sequence[int] | None = None, preprocessing: Mapping[str, Any] | None = None,
                 feature_specs: Mapping[str, Mapping[str, Any]] | None = None,
                 extract_profile: str | None = None, proj_norm: bool = True, zeroshot_prior: bool = False):
        super().__init__()
        self.save_hyperparameters()
        self.modalities = sorted(modality_dims)
        self.classes = list(classes)
        self.multilabel = multilabel
        num_classes = len(self.classes)
        # the network prediction loads (weights under "net."); this module adds training around it
        try:
            self.net = FusionNetwork(modality_dims, self.classes, fusion, multilabel, d_model, proj_dropout,
                                     classifier_hidden, classifier_dropout, proj_norm, zeroshot_prior)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        self.register_buffer("class_weight", self._class_weight(class_weights, class_counts, num_classes))
        # ModuleDict keys cannot be "train" (nn.Module.train), hence the suffix
        self.metrics = nn.ModuleDict({f"{s}_metrics": scalar_metrics(num_classes, multilabel, exact=s != "train")
                                      .clone(prefix=f"{s}/") for s in ("train", "val", "test")})
        # evaluation loss and video counts as metrics: exact under DDP, where ranks hold different counts
        self.eval_loss = nn.ModuleDict({s: MeanMetric() for s in ("val", "test")})
        # the training loss too: Lightning's own per-step log(on_epoch=True) cost 1.6 ms a step,
        # a tenth of a small head's step
        self.train_loss = MeanMetric()
        self.eval_videos = nn.ModuleDict({s: SumMetric() for s in ("val", "test")})
        self.test_per_class = per_class_f1(num_classes, multilabel)
        self.test_confusion = None if multilabel else MulticlassConfusionMatrix(num_classes)
        self.confusion_matrix: np.ndarray | None = None  # filled after a test run, for plots
        self._pending_rng: dict[str, Any] | None = None

    @staticmethod
    def _class_weight(weights, counts, num_classes: int) -> Tensor:
        if weights is None:
            return torch.ones(num_classes)
        if isinstance(weights, str):
            if weights != "balanced":
                raise ConfigError(f"model.class_weights must be null, 'balanced' or a list, got {weights!r}")
            if counts is None:
                raise ValueError("class_weights='balanced' needs the training class counts")
            c = torch.as_tensor(counts, dtype=torch.float32).clamp_min(1)
            return c.sum() / (num_classes * c)
        w = torch.as_tensor(list(weights), dtype=torch.float32)
        if w.shape != (num_classes,):
            raise ConfigError(f"model.class_weights has {w.numel()} entries for {num_classes} classes")
        return w

    def set_normalization(self, stats: Mapping[str, tuple[Any, Any]] | None) -> None:
        """Per-modality (mean, std) of the training split; None leaves the features as they are."""
        self.net.normalizer.set_stats(stats)

    # ---------------------------------------------------------------- forward
    def forward(self, features: dict[str, Tensor], masks: dict[str, Tensor]) -> Tensor:
        """Raw features [B, T, D] and masks [B, T] per modality -> logits [B, classes]."""
        return self.net(features, masks)

    def loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        if self.multilabel:
            per_class = nn.functional.binary_cross_entropy_with_logits(logits, labels.float(), reduction="none")
            return (per_class * self.class_weight).mean()
        return nn.functional.cross_entropy(logits, labels, weight=self.class_weight,
                                           label_smoothing=self.hparams.label_smoothing)

    def probabilities(self, logits: Tensor) -> Tensor:
        return self.net.probabilities(logits)

    def _step(self, batch: dict[str, Any], stage: str) -> Tensor:
        logits = self(batch["features"], batch["masks"])
        labels = batch["labels"]
        loss = self.loss(logits, labels)
        if not torch.isfinite(loss):
            raise TrainingError(f"{stage} loss is {loss.item()} at step {self.global_step} "
                                f"(videos {batch['ids'][:3]}...): lower model.lr or check the features")
        probs = self.probabilities(logits.detach())
        target = labels.long() if self.multilabel else labels
        self.metrics[f"{stage}_metrics"].update(probs, target)
        batch_size = labels.shape[0]
        if stage == "train":
            self.train_loss.update(loss.detach(), weight=batch_size)
        else:
            self.eval_loss[stage].update(loss.detach(), weight=batch_size)
            self.eval_videos[stage].update(batch_size)
        if stage == "test":
            self.test_per_class.update(probs, target)
            if self.test_confusion is not None:
                self.test_confusion.update(probs, target)
        return loss

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        # batches are built on the CPU: training there, Lightning's generic walk over the batch
        # (a tenth of a short trial's time) moves nothing, so it is skipped
        if device.type == "cpu":
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def predict_step(self, batch, batch_idx):
        return {"ids": batch["ids"], "probs": self.probabilities(self(batch["features"], batch["masks"]))}

    def _log_epoch(self, stage: str) -> None:
        values = self.metrics[f"{stage}_metrics"].compute()
        if stage == "train":
            self.log("train/loss", self.train_loss.compute(), prog_bar=True, sync_dist=False)
            self.train_loss.reset()
        else:  # torchmetrics syncs these across DDP ranks itself
            values[f"{stage}/loss"] = self.eval_loss[stage].compute()
            values[f"{stage}/videos"] = self.eval_videos[stage].compute().float()
            self.eval_loss[stage].reset()
            self.eval_videos[stage].reset()
        self.log_dict(values, prog_bar=stage == "val", sync_dist=False)
        self.metrics[f"{stage}_metrics"].reset()

    def on_train_epoch_end(self):
        self._log_epoch("train")

    def on_validation_epoch_end(self):
        self._log_epoch("val")

    def on_test_epoch_end(self):
        self._log_epoch("test")
        for name, value in zip(self.classes, self.test_per_class.compute()):
            self.log(f"test/f1/{name}", value)
        self.test_per_class.reset()
        if self.test_confusion is not None:
            self.confusion_matrix = self.test_confusion.compute().cpu().numpy()
            self.test_confusion.reset()

    # ---------------------------------------------------------------- optimization
    def build_optimizer(self) -> torch.optim.Optimizer:
        """AdamW with weight decay on weight matrices only. Norms and biases are not shrunk towards
        zero, nor what the fusion head names (its learned tokens). On CPU the fused implementation
        updates all parameters in one kernel: the default per-tensor loop costs a sixth of a train
        step for heads with many small tensors."""
        decay, no_decay = [], []
        keep = {f"net.fusion.{name}" for name in self.net.fusion.no_weight_decay()}
        for name, p in self.named_parameters():
            if p.requires_grad:
                (no_decay if p.ndim < 2 or name in keep else decay).append(p)
        hp = self.hparams
        # fused on CPU only: on GPUs the default (foreach) is already fast, and Lightning refuses to
        # clip gradients under mixed precision for an optimizer that unscales them itself
        trainer = getattr(self, "_trainer", None)
        mixed = trainer is not None and "mixed" in str(trainer.precision)
        fused = not mixed and all(p.device.type == "cpu" and p.dtype.is_floating_point for p in decay + no_decay)
        return torch.optim.AdamW([{"params": decay, "weight_decay": hp.weight_decay},
                                  {"params": no_decay, "weight_decay": 0.0}], lr=hp.lr, fused=fused)

    def configure_optimizers(self):
        hp = self.hparams
        optimizer = self.build_optimizer()
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = int(hp.warmup_frac * total)

        def lr_factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return hp.min_lr_ratio + (1 - hp.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ---------------------------------------------------------------- exact resume
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[FORMAT_KEY] = CHECKPOINT_FORMAT
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        # plain tensors and numbers only, so checkpoints load with torch.load(weights_only=True)
        checkpoint["vemo_rng"] = {"torch": torch.get_rng_state(),
                                  "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
                                  "python": random.getstate()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        check_checkpoint_format(checkpoint, "the checkpoint")
        # applied when training restarts, not now: validation between here and there would
        # otherwise run on a different random state than in the uninterrupted run
        self._pending_rng = checkpoint.get("vemo_rng")

    def on_train_epoch_start(self) -> None:
        if self._pending_rng is not None:
            torch.set_rng_state(self._pending_rng["torch"])
            kind, keys, pos, has_gauss, gauss = self._pending_rng["numpy"]
            np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
            random.setstate(self._pending_rng["python"])
            self._pending_rng = None

