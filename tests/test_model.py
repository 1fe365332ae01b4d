"""VideoClassifier without a Trainer: forward, losses, probabilities, class weights, config wiring."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import vemo.fusion
from vemo.config import load_config
from vemo.data.collate import collate
from vemo.fusion import fusion_options
from vemo.train.module import VideoClassifier

DIMS = {"frames": 12, "audio": 6, "text": 5}
CLASSES = ["a", "b", "c", "d"]


def batch(multilabel=False, size=5, seed=0):
    rng = np.random.default_rng(seed)
    items = []
    for i in range(size):
        feats = {m: rng.normal(size=(int(rng.integers(0 if m != "frames" else 1, 6)) if m != "text" else i % 2, d))
                 for m, d in DIMS.items()}
        label = (rng.random(len(CLASSES)) < 0.4).astype(np.float32) if multilabel else np.int64(i % len(CLASSES))
        items.append({"id": f"v{i}", "features": {m: x.astype(np.float32) for m, x in feats.items()}, "label": label})
    return collate(items)


def model(fusion="concat_mlp", **kw):
    torch.manual_seed(0)
    return VideoClassifier(DIMS, CLASSES, fusion={"name": fusion}, d_model=16, classifier_hidden=16, **kw).eval()


@pytest.mark.parametrize("name", vemo.fusion.names())
def test_every_fusion_config_builds_a_working_classifier(name):
    """A registered head has a config file, and the composed config builds a classifier."""
    cfg = load_config([f"fusion={name}", "run_dir=unused"])
    spec = OmegaConf.to_container(cfg.fusion, resolve=True)
    assert fusion_options(spec)[0] == name
    torch.manual_seed(0)
    clf = VideoClassifier(DIMS, CLASSES, fusion=spec, d_model=32, classifier_hidden=16).eval()
    b = batch()
    with torch.no_grad():
        logits = clf(b["features"], b["masks"])
    assert logits.shape == (5, len(CLASSES)) and torch.isfinite(logits).all()


def test_single_label_probabilities_and_loss():
    clf = model()
    b = batch()
    logits = clf(b["features"], b["masks"])
    probs = clf.probabilities(logits)
    torch.testing.assert_close(probs.sum(-1), torch.ones(5))
    expected = torch.nn.functional.cross_entropy(logits, b["labels"])
    torch.testing.assert_close(clf.loss(logits, b["labels"]), expected)


def test_multilabel_uses_independent_sigmoids():
    clf = model(multilabel=True)
    b = batch(multilabel=True)
    logits = clf(b["features"], b["masks"])
    torch.testing.assert_close(clf.probabilities(logits), torch.sigmoid(logits))
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, b["labels"])
    torch.testing.assert_close(clf.loss(logits, b["labels"]), expected)


def test_balanced_class_weights():
    clf = model(class_weights="balanced", class_counts=[10, 30, 20, 40])
    torch.testing.assert_close(clf.class_weight, torch.tensor([100 / 40, 100 / 120, 100 / 80, 100 / 160]))
    with pytest.raises(ValueError, match="4 classes"):
        model(class_weights=[1.0, 2.0])
    with pytest.raises(ValueError):
        model(class_weights="balanced")  # needs counts


def test_batch_without_a_trained_modality_is_an_error():
    clf = model()
    b = batch()
    del b["features"]["audio"]
    with pytest.raises(KeyError, match="audio"):
        clf(b["features"], b["masks"])


def test_padding_garbage_does_not_reach_the_logits():
    clf = model(fusion="crossattn")
    b = batch()
    dirty = {m: torch.where(b["masks"][m].unsqueeze(-1), x, torch.full_like(x, float("nan")))
             for m, x in b["features"].items()}
    with torch.no_grad():
        torch.testing.assert_close(clf(dirty, b["masks"]), clf(b["features"], b["masks"]), atol=1e-5, rtol=0)


def test_fusion_options_rejects_foreign_targets_and_missing_names():
    with pytest.raises(ValueError, match="register"):
        fusion_options({"_target_": "my.Module", "name": "x"})
    with pytest.raises(ValueError, match="gated"):
        fusion_options({"hidden": 3})
    assert fusion_options({"name": "gated", "hidden": 8}) == ("gated", {"hidden": 8})


@pytest.mark.parametrize("multilabel", [False, True])
def test_metric_names_are_the_names_the_metrics_are_logged_under(multilabel):
    from vemo.train.metrics import metric_names, scalar_metrics, validation_metrics
    assert sorted(scalar_metrics(3, multilabel).keys(keep_base=True)) == sorted(metric_names(multilabel))
    assert validation_metrics(multilabel)[:len(metric_names(multilabel))] == [f"val/{n}" for n in metric_names(multilabel)]


def test_the_network_of_a_checkpoint_predicts_as_the_trained_module():
    """The LightningModule holds a FusionNetwork (``net``); the checkpoint's weights, under ``net.``,
    rebuild it alone (no Lightning) with the same outputs."""
    from vemo.network import CHECKPOINT_FORMAT, FusionNetwork

    torch.manual_seed(0)
    trained = VideoClassifier(DIMS, CLASSES, fusion={"name": "crossattn"}, d_model=16, classifier_hidden=16).eval()
    trained.set_normalization({"frames": (torch.randn(DIMS["frames"]), torch.rand(DIMS["frames"]) + 0.5)})
    b = batch()
    checkpoint = {"vemo_format": CHECKPOINT_FORMAT, "hyper_parameters": dict(trained.hparams),
                  "state_dict": trained.state_dict()}
    assert {k.split(".", 1)[0] for k in checkpoint["state_dict"]} >= {"net"}
    net = FusionNetwork.from_checkpoint(checkpoint)
    assert net is not trained.net and isinstance(net, FusionNetwork)
    torch.testing.assert_close(net(b["features"], b["masks"]), trained(b["features"], b["masks"]))


def test_optimizer_is_fused_on_cpu_but_not_under_mixed_precision():
    """Lightning refuses gradient clipping under mixed precision for an optimizer that unscales
    gradients itself (fused AdamW): such runs get the default implementation."""
    import lightning as L

    clf = model()
    assert clf.build_optimizer().defaults["fused"] is True
    clf.trainer = L.Trainer(accelerator="cpu", precision="bf16-mixed", logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False)
    assert not clf.build_optimizer().defaults["fused"]


def test_training_map_keeps_a_fixed_size_state():
    """The training split's mAP is binned (its state does not grow with the epoch); validation and
    test keep the exact one."""
    clf = model(multilabel=True)
    train_ap = clf.metrics["train_metrics"]["map_macro"]
    val_ap = clf.metrics["val_metrics"]["map_macro"]
    b = batch(multilabel=True, size=6)
    state_size = train_ap.confmat.numel()
    for _ in range(3):
        probs = torch.rand(6, len(CLASSES))
        train_ap.update(probs, b["labels"].long())
        val_ap.update(probs, b["labels"].long())
    assert train_ap.thresholds is not None and val_ap.thresholds is None
    assert train_ap.confmat.numel() == state_size  # counts per threshold, however many steps
    assert len(val_ap.preds) == 3                   # the exact state keeps every step
