"""Frame and face extractors: MobileNetV2 and CLIP frame embeddings, RetinaFace detection with the
FER mini-XCEPTION port and a ViT expression model.

The packaged weights (MobileNetV2, RetinaFace, mini-XCEPTION) are real; the hub models (CLIP, ViT)
are tiny random models saved to tmp_path and loaded by the real loading code. The face photo is
scikit-image's ``astronaut()`` (a test-only dependency).
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from tests import tiny_models

from vemo.extract import create
from vemo.extract.base import DecodedVideo
from vemo.extract.face_detector import decode_boxes, largest, nms, prior_boxes
from vemo.extract.mini_xception import FER_LABELS

skimage_data = pytest.importorskip("skimage.data")


def video(frames, vid: str = "v", has_video: bool = True) -> DecodedVideo:
    frames = np.asarray(frames, dtype=np.uint8)
    n = len(frames)
    height, width = (frames.shape[1:3] if n else (0, 0))
    return DecodedVideo(id=vid, path=f"{vid}.mp4", frames=frames.reshape(n, height, width, 3) if n else
                        np.zeros((0, 8, 8, 3), np.uint8), frame_times=np.arange(n) * 0.5, audio={},
                        duration=max(n, 1) * 0.5, has_video=has_video, width=int(width), height=int(height))


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skimage_data.astronaut()  # 512x512 RGB, one smiling face at about x 180-270, y 60-176


@pytest.fixture(scope="module")
def fer():
    extractor = create("retinaface_fer")
    extractor.ensure_loaded()
    return extractor


def smooth_frames(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """Low-frequency colour images: resampling differences between libraries stay small."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    frames = []
    for _ in range(n):
        a, b, c = rng.uniform(0.5, 3, size=(3, 3))
        frames.append(np.stack([127 + 120 * np.sin(a[k] * x + b[k] * y + c[k]) for k in range(3)], -1))
    return np.asarray(frames).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# import weight
# ---------------------------------------------------------------------------------------------
def test_modules_import_no_heavy_library():
    code = ("import sys, vemo.extract.frames, vemo.extract.faces; "
            "print([m for m in ('torch', 'cv2', 'onnxruntime', 'transformers', 'av', 'h5py') "
            "if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------
# frames
# ---------------------------------------------------------------------------------------------
def test_mobilenet_tokens_per_frame_batched_across_videos():
    extractor = create("mobilenet_v2", batch_size=5)
    assert extractor.dim == 1280 and extractor.kind == "sequence" and extractor.modality == "frames"
    a = video(smooth_frames(3, 90, 160, seed=1), "a")
    b = video(smooth_frames(4, 120, 100, seed=2), "b")   # another frame size in the same batch
    empty = video(np.zeros((0, 8, 8, 3)), "empty")
    no_stream = video(np.zeros((0, 8, 8, 3)), "audio-only", has_video=False)
    together = extractor.extract([a, empty, b, no_stream])
    assert together[0].features.shape == (3, 1280) and together[0].features.dtype == np.float32
    assert together[2].features.shape == (4, 1280)
    assert together[1].features is None and together[1].absent == "no frames decoded"
    assert together[3].features is None and together[3].absent == "no video stream"
    alone = extractor.extract([b])[0].features
    np.testing.assert_allclose(together[2].features, alone, atol=1e-4)
    assert (alone >= 0).all()  # pooled ReLU6 activations
    assert not np.allclose(alone[0], alone[1])  # different frames, different tokens
    spec = extractor.spec()
    assert spec.dim == 1280 and spec.extractor["name"] == "mobilenet_v2"
    assert len(spec.extractor["weights_sha256"]) == 64 and spec.extractor["image_size"] == 224


def test_mobilenet_features_feed_the_imagenet_classifier(astronaut):
    """The pooled features are those the packaged classifier was trained on: the torchvision
    model's own forward pass on the same pixels gives the same logits."""
    import torch
    from torchvision.models import mobilenet_v2

    from vemo import weights
    from vemo.extract.frames import IMAGENET_MEAN, IMAGENET_STD, resize_center_crop

    extractor = create("mobilenet_v2")
    features = extractor.extract([video(astronaut[None])])[0].features
    net = mobilenet_v2()
    net.load_state_dict(torch.load(weights.ensure("mobilenet_v2") / "mobilenet_v2-b0353104.pth",
                                   weights_only=True))
    net.eval()
    pixels = resize_center_crop(astronaut[None], 224, IMAGENET_MEAN, IMAGENET_STD)
    assert pixels.shape == (1, 3, 224, 224)
    with torch.inference_mode():
        expected = net(torch.from_numpy(pixels))
        ours = net.classifier(torch.from_numpy(features))
    np.testing.assert_allclose(ours.numpy(), expected.numpy(), atol=1e-3)


def test_mobilenet_onnx_and_torch_runtimes_agree():
    frames = video(smooth_frames(2, 64, 96, seed=3))
    onnx = create("mobilenet_v2", runtime="onnx")
    torch_runtime = create("mobilenet_v2", runtime="torch")
    np.testing.assert_allclose(onnx.extract([frames])[0].features, torch_runtime.extract([frames])[0].features,
                               atol=1e-4)
    assert onnx._session is not None and torch_runtime._session is None  # each really ran its runtime
    with pytest.raises(Exception, match="runtime must be one of auto, onnx, torch, got 'tf'"):
        create("mobilenet_v2", runtime="tf")


def test_the_onnx_graph_is_exported_once_and_kept_beside_the_weights(tmp_path, monkeypatch):
    """A cold start reads the exported graph instead of exporting again; another input size (or
    weights, opset, torch) is another file; the extractor's graph lands in the weight cache."""
    import torch

    from vemo import weights
    from vemo.extract.frames import exported_graph

    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()).eval()
    first = exported_graph(lambda: module, 32, "a" * 64, tmp_path)
    import onnx
    onnx.checker.check_model(onnx.load_from_string(first))
    assert [p.suffix for p in tmp_path.iterdir()] == [".onnx"]

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr(torch.onnx, "export", no_export)
    assert exported_graph(lambda: module, 32, "a" * 64, tmp_path) == first
    with pytest.raises(Exception, match="could not export MobileNetV2 to ONNX"):  # other settings: a new export
        exported_graph(lambda: module, 48, "a" * 64, tmp_path)
    monkeypatch.undo()
    extractor = create("mobilenet_v2", runtime="onnx")
    extractor.load()
    assert list((weights.model_dir("mobilenet_v2") / "onnx").glob("mobilenet_v2-224px-*.onnx"))


def test_the_runtime_used_is_recorded_and_a_missing_one_fails_at_load(monkeypatch):
    from vemo.errors import MissingPackageError

    assert create("mobilenet_v2").spec().extractor["runtime"] == "onnx"  # auto on a CPU
    assert create("mobilenet_v2", runtime="torch").spec().extractor["runtime"] == "torch"
    assert create("mobilenet_v2", device="cuda").runtime_used() == "torch"  # auto on a GPU
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now fails, as when it is not installed
    for extractor in (create("mobilenet_v2"), create("mobilenet_v2", runtime="onnx")):
        with pytest.raises(MissingPackageError, match=r"^extractor mobilenet_v2 \(frames\) runs on onnx here, "
                           r"which needs onnx: pip install onnx \(or choose extract.extractors.frames.runtime=torch"):
            extractor.ensure_loaded()
    asked = create("mobilenet_v2", fallback="torch")  # the fallback a user asks for
    asked.ensure_loaded()
    assert asked._session is None and asked.spec().extractor["runtime"] == "torch"


def test_a_missing_package_of_any_extractor_is_named_at_load(monkeypatch):
    from vemo.errors import MissingPackageError

    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(MissingPackageError, match=r"^extractor retinaface_fer \(faces, runtime onnxruntime "
                       r"\(detector\) \+ torch \(expression\)\) needs h5py, which is not installed: pip install h5py$"):
        create("retinaface_fer").ensure_loaded()


def test_resize_center_crop_keeps_the_centre():
    from vemo.extract.frames import resize_center_crop

    frames = np.zeros((1, 100, 300, 3), np.uint8)
    frames[:, :, 100:200] = 255  # the centre third is white
    pixels = resize_center_crop(frames, 50, (0, 0, 0), (1, 1, 1))
    assert pixels.shape == (1, 3, 50, 50)
    assert pixels[0, :, :, 2:-2].min() == pytest.approx(1.0)  # white, scaled to [0, 1]


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    return tiny_models.tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


def test_clip_from_a_local_folder(tiny_clip):
    import torch
    from transformers import CLIPImageProcessor, CLIPModel

    extractor = create("clip", model=str(tiny_clip), batch_size=3)
    assert extractor.dim == 12
    settings = extractor.settings()
    assert settings["model"] == str(tiny_clip) and len(settings["weights_sha256"]) == 64
    assert settings["image_size"] == 32
    frames = smooth_frames(4, 72, 128)
    a, empty = extractor.extract([video(frames, "a"), video(np.zeros((0, 8, 8, 3)), "e")])
    assert a.features.shape == (4, 12) and empty.absent == "no frames decoded"
    np.testing.assert_allclose(np.linalg.norm(a.features, axis=1), 1.0, atol=1e-5)
    # the same embedding as the transformers pipeline (its PIL resize differs slightly from ours)
    processor = CLIPImageProcessor.from_pretrained(tiny_clip)
    model = CLIPModel.from_pretrained(tiny_clip).eval()
    with torch.inference_mode():
        pixels = processor(images=list(frames), return_tensors="pt")["pixel_values"]
        expected = model.get_image_features(pixel_values=pixels)
        expected = getattr(expected, "pooler_output", expected)
        expected = torch.nn.functional.normalize(expected, dim=-1).numpy()
    cosine = (a.features * expected).sum(axis=1)
    assert cosine.min() > 0.99


# ---------------------------------------------------------------------------------------------
# detection helpers
# ---------------------------------------------------------------------------------------------
def test_prior_boxes_layout():
    priors = prior_boxes(192, 320)
    # two anchors per cell on 24x40, 12x20 and 6x10 maps
    assert priors.shape == ((24 * 40 + 12 * 20 + 6 * 10) * 2, 4)
    # first cell of the stride-8 level: centre (4, 4) px, sizes 16 then 32 px
    np.testing.assert_allclose(priors[0] * [320, 192, 320, 192], [4, 4, 16, 16], atol=1e-4)
    np.testing.assert_allclose(priors[1] * [320, 192, 320, 192], [4, 4, 32, 32], atol=1e-4)
    np.testing.assert_allclose(priors[2] * [320, 192, 320, 192], [12, 4, 16, 16], atol=1e-4)
    # last anchor: the stride-32 level's bottom-right cell, 512 px
    np.testing.assert_allclose(priors[-1] * [320, 192, 320, 192], [304, 176, 512, 512], atol=1e-3)


def test_decode_boxes_and_nms():
    priors = np.array([[0.5, 0.5, 0.2, 0.4]], np.float32)
    np.testing.assert_allclose(decode_boxes(np.zeros((1, 4), np.float32), priors), [[0.4, 0.3, 0.6, 0.7]],
                               atol=1e-6)
    shifted = decode_boxes(np.array([[1.0, 0.0, np.log(2) / 0.2, 0.0]], np.float32), priors)
    np.testing.assert_allclose(shifted, [[0.32, 0.3, 0.72, 0.7]], atol=1e-6)  # cx + 0.1*0.2, w * 2
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], np.float32)
    assert nms(boxes, np.array([0.8, 0.9, 0.7]), 0.4).tolist() == [1, 2]
    assert largest(np.array([[0, 0, 5, 5, 0.9], [0, 0, 8, 8, 0.7]])).tolist() == [0, 0, 8, 8, 0.7]
    assert largest(np.zeros((0, 5))) is None


# ---------------------------------------------------------------------------------------------
# faces: RetinaFace + FER mini-XCEPTION
# ---------------------------------------------------------------------------------------------
def test_fer_finds_the_face_and_skips_frames_without_one(fer, astronaut):
    blank = np.full_like(astronaut, 200)
    clip = video(np.stack([astronaut, blank, astronaut[:, ::-1]]), "astro")
    nobody = video(np.stack([blank, np.zeros_like(blank)]), "nobody")
    result, absent, empty = fer.extract([clip, nobody, video(np.zeros((0, 8, 8, 3)), "e")])

    assert fer.dim == 135 and result.features.shape == (2, 135)  # frame 1 had no face
    probs = result.features[:, 128:]
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    frames = result.side["frames"]
    assert [f["time"] for f in frames] == [0.0, 0.5, 1.0]
    assert frames[1]["boxes"] == [] and "expression" not in frames[1]
    (x0, y0, x1, y1, score), = frames[0]["boxes"]
    assert 160 < x0 < 200 and 250 < x1 < 290 and 40 < y0 < 80 and 160 < y1 < 200 and score > 0.9
    (mx0, _, mx1, _, _), = frames[2]["boxes"]  # the mirrored frame: the box mirrored too
    assert abs((512 - mx1) - x0) < 6 and abs((512 - mx0) - x1) < 6
    # she smiles: the ported network says happy, in side data and in the tokens
    assert max(frames[0]["expression"], key=frames[0]["expression"].get) == "happy"
    assert list(result.side["expression_mean"]) == list(FER_LABELS)
    assert probs[:, FER_LABELS.index("happy")].min() > 0.5

    assert absent.features is None and absent.absent == "no face"
    assert [f["boxes"] for f in absent.side["frames"]] == [[], []]
    assert empty.absent == "no frames decoded"
    # deterministic, and independent of what else is in the batch
    again = fer.extract([clip])[0]
    np.testing.assert_allclose(again.features, result.features, atol=1e-5)


def test_fer_uses_the_largest_face(fer, astronaut):
    import cv2

    face = astronaut[20:260, 120:340]  # 240x220 around the face
    small = cv2.resize(face, (110, 120), interpolation=cv2.INTER_AREA)
    canvas = np.full((300, 600, 3), 90, np.uint8)
    canvas[30:270, 20:240] = face
    canvas[90:210, 420:530] = small
    result = fer.extract([video(canvas[None]), video(face[None]), video(small[None])])
    boxes = result[0].side["frames"][0]["boxes"]
    assert len(boxes) == 2
    chosen, big_alone, small_alone = (r.features[0, :128] for r in result)
    assert np.linalg.norm(chosen - big_alone) < np.linalg.norm(chosen - small_alone)


def test_fer_settings_and_spec(fer):
    settings = fer.settings()
    assert settings["detect_size"] == 320 and settings["score_threshold"] == 0.6
    assert len(settings["detector_sha256"]) == 64 and len(settings["weights_sha256"]) == 64
    spec = fer.spec()
    assert spec.dim == 135 and spec.kind == "sequence" and spec.extractor["name"] == "retinaface_fer"


def test_mini_xception_port_matches_a_keras_style_reference():
    """An independent NHWC numpy evaluation of the Keras graph, read layer by layer from the HDF5
    file's own model_config, agrees with the torch port."""
    import torch

    from vemo import weights
    from vemo.extract.mini_xception import FER_FILE, load_mini_xception

    path = weights.ensure("fer2013_mini_xception") / FER_FILE
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(2, 64, 64, 1)).astype(np.float64)
    expected = keras_reference(path, x)
    net = load_mini_xception(path)
    with torch.inference_mode():
        _, logits = net(torch.from_numpy(x.transpose(0, 3, 1, 2)).float())
    np.testing.assert_allclose(torch.softmax(logits, -1).numpy(), expected, atol=1e-5)


def keras_reference(path, x: np.ndarray) -> np.ndarray:
    """Evaluate the Keras 2 functional graph in numpy (NHWC, TF 'same' padding): a second, direct
    reading of the file that shares no code with the torch port."""
    import json

    import h5py

    def padded(t, kernel, stride, mode, fill=0.0):
        if mode == "valid":
            return t
        pads = []
        for size, k, s in zip(t.shape[1:3], kernel, stride):
            total = max((-(-size // s) - 1) * s + k - size, 0)
            pads.append((total // 2, total - total // 2))
        return np.pad(t, ((0, 0), pads[0], pads[1], (0, 0)), constant_values=fill)

    def windows(t, kernel, stride):
        kh, kw = kernel
        oh, ow = (t.shape[1] - kh) // stride[0] + 1, (t.shape[2] - kw) // stride[1] + 1
        return np.stack([np.stack([t[:, i:i + oh * stride[0]:stride[0], j:j + ow * stride[1]:stride[1]]
                                   for j in range(kw)], 3) for i in range(kh)], 3)  # [N,oh,ow,kh,kw,C]

    with h5py.File(path, "r") as f:
        config = json.loads(f.attrs["model_config"])
        weights = {}
        f["model_weights"].visititems(lambda name, obj: weights.__setitem__(
            name.split("/")[0] + "/" + name.split("/")[-1], np.asarray(obj)) if isinstance(obj, h5py.Dataset) else None)
    values = {}
    for layer in config["config"]["layers"]:
        kind, name, cfg = layer["class_name"], layer["config"]["name"], layer["config"]
        inputs = [values[node[0]] for node in layer["inbound_nodes"][0]] if layer["inbound_nodes"] else []
        w = lambda key: weights[f"{name}/{key}:0"]  # noqa: E731
        if kind == "InputLayer":
            out = x
        elif kind == "Conv2D":
            win = windows(padded(inputs[0], cfg["kernel_size"], cfg["strides"], cfg["padding"]),
                          cfg["kernel_size"], cfg["strides"])
            out = np.einsum("nhwijc,ijco->nhwo", win, w("kernel"))
            if cfg["use_bias"]:
                out = out + w("bias")
        elif kind == "SeparableConv2D":
            win = windows(padded(inputs[0], cfg["kernel_size"], cfg["strides"], cfg["padding"]),
                          cfg["kernel_size"], cfg["strides"])
            depth = np.einsum("nhwijc,ijc->nhwc", win, w("depthwise_kernel")[..., 0])
            out = np.einsum("nhwc,co->nhwo", depth, w("pointwise_kernel")[0, 0])
        elif kind == "BatchNormalization":
            out = (inputs[0] - w("moving_mean")) / np.sqrt(w("moving_variance") + cfg["epsilon"]) \
                * w("gamma") + w("beta")
        elif kind == "Activation" and cfg["activation"] == "relu":
            out = np.maximum(inputs[0], 0)
        elif kind == "Activation" and cfg["activation"] == "softmax":
            e = np.exp(inputs[0] - inputs[0].max(-1, keepdims=True))
            out = e / e.sum(-1, keepdims=True)
        elif kind == "MaxPooling2D":
            win = windows(padded(inputs[0], cfg["pool_size"], cfg["strides"], cfg["padding"], -np.inf),
                          cfg["pool_size"], cfg["strides"])
            out = win.max(axis=(3, 4))
        elif kind == "Add":
            out = sum(inputs)
        elif kind == "GlobalAveragePooling2D":
            out = inputs[0].mean(axis=(1, 2))
        else:
            raise AssertionError(f"unexpected layer {kind}")
        values[name] = out
    return values[config["config"]["output_layers"][0][0]]


# ---------------------------------------------------------------------------------------------
# faces: RetinaFace + ViT
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_vit(tmp_path_factory):
    return tiny_models.tiny_vit(tmp_path_factory.mktemp("tiny-vit"))


def test_vit_faces_from_a_local_folder(tiny_vit, astronaut):
    import torch
    from transformers import ViTForImageClassification

    extractor = create("retinaface_vit", model=str(tiny_vit))
    assert extractor.dim == 24 and extractor.labels[3] == "happy"
    settings = extractor.settings()
    assert settings["model"] == str(tiny_vit) and len(settings["weights_sha256"]) == 64
    blank = np.full_like(astronaut, 30)
    result, absent = extractor.extract([video(np.stack([blank, astronaut])), video(blank[None])])
    assert result.features.shape == (1, 24)
    assert absent.absent == "no face"
    frames = result.side["frames"]
    assert frames[0]["boxes"] == [] and len(frames[1]["boxes"]) == 1
    expression = frames[1]["expression"]
    assert list(expression) == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    assert sum(expression.values()) == pytest.approx(1.0, abs=1e-3)
    # the token is the CLS the classifier reads: its logits give the side-data probabilities
    model = ViTForImageClassification.from_pretrained(tiny_vit).eval()
    with torch.inference_mode():
        probs = torch.softmax(model.classifier(torch.from_numpy(result.features)), -1)[0].numpy()
    np.testing.assert_allclose(probs, list(expression.values()), atol=1e-3)
