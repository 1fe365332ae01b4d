"""The FER-2013 mini-XCEPTION facial-expression network (``retinaface_fer``'s expression model), ported
from its Keras HDF5 file to a small torch module with every BatchNormalization folded in."""
from __future__ import annotations

from pathlib import Path

import numpy as np

FER_FILE = "emotion_model.hdf5"
FER_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
FER_FEATURES = 128  # channels of the last residual block, pooled


def _tf_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'same' padding (before, after) for one dimension: the extra pixel goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _mini_xception_class():
    from torch import nn
    import torch.nn.functional as F

    def _tf_same_max_pool(x):
        """3x3/2 max pool with TF 'same' padding (the odd padded pixel goes after). torch's own
        padding + ceil_mode gives exactly those windows and keeps the fast channels_last kernel."""
        pads = [_tf_same_padding(s, 3, 2) for s in x.shape[-2:]]
        if pads[0][0] == pads[1][0] and all(after - before in (0, 1) for before, after in pads):
            return F.max_pool2d(x, 3, 2, padding=pads[0][0], ceil_mode=True)
        (top, bottom), (left, right) = pads
        return F.max_pool2d(F.pad(x, (left, right, top, bottom), value=float("-inf")), 3, 2)

    class SeparableConv(nn.Module):
        """Keras SeparableConv2D (depth multiplier 1, 3x3 'same'); the bias is the folded BN."""

        def __init__(self, cin: int, cout: int):
            super().__init__()
            self.depthwise = nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False)
            self.pointwise = nn.Conv2d(cin, cout, 1)

        def forward(self, x):
            return self.pointwise(self.depthwise(x))

    class Block(nn.Module):
        """Two separable convs + 3x3/2 max pool, plus a strided 1x1 conv shortcut."""

        def __init__(self, cin: int, cout: int):
            super().__init__()
            self.shortcut = nn.Conv2d(cin, cout, 1, stride=2)
            self.sep1, self.sep2 = SeparableConv(cin, cout), SeparableConv(cout, cout)

        def forward(self, x):
            y = self.sep2(F.relu(self.sep1(x), inplace=True))
            return _tf_same_max_pool(y) + self.shortcut(x)

    class MiniXceptionNet(nn.Module):
        """Every Keras BatchNormalization is folded into the convolution before it (eval only)."""

        def __init__(self):
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(1, 8, 3), nn.Conv2d(8, 8, 3)
            self.blocks = nn.ModuleList([Block(8, 16), Block(16, 32), Block(32, 64), Block(64, FER_FEATURES)])
            self.head = nn.Conv2d(FER_FEATURES, len(FER_LABELS), 3, padding=1)

        def forward(self, x):
            """x: [N, 1, 64, 64] in [-1, 1] -> (pooled features [N, 128], logits [N, 7])."""
            x = F.relu(self.conv2(F.relu(self.conv1(x), inplace=True)), inplace=True)
            for block in self.blocks:
                x = block(x)
            return x.mean(dim=(2, 3)), self.head(x).mean(dim=(2, 3))

    return MiniXceptionNet


def load_mini_xception(path: str | Path):
    """Build the torch mini-XCEPTION from the Keras HDF5 file (eval mode, channels_last).

    Keras conventions: kernels [H, W, in, out] (torch wants [out, in, H, W]), depthwise kernels
    [H, W, in, multiplier], BatchNormalization epsilon 1e-3 (this file's value), 'same' padding
    with the odd pixel after. Each BN is folded into the conv before it:
    w' = w * gamma / sqrt(var + eps), b' = beta - mean * gamma / sqrt(var + eps).
    """
    import h5py
    import torch

    net = _mini_xception_class()()
    with h5py.File(path, "r") as f:
        weights = f["model_weights"]

        def tensor(layer: str, name: str) -> np.ndarray:
            group = weights[layer]
            while name not in group:  # Keras nests each layer's weights one level deeper
                group = group[next(iter(group.keys()))]
            return np.asarray(group[name], dtype=np.float64)

        def set_conv(module, kernel_oihw: np.ndarray, bn_layer: str | None = None,
                     bias: np.ndarray | None = None) -> None:
            if bn_layer is not None:
                scale = tensor(bn_layer, "gamma:0") / np.sqrt(tensor(bn_layer, "moving_variance:0") + 1e-3)
                kernel_oihw = kernel_oihw * scale[:, None, None, None]
                bias = tensor(bn_layer, "beta:0") - tensor(bn_layer, "moving_mean:0") * scale
            module.weight.copy_(torch.from_numpy(kernel_oihw.astype(np.float32)))
            if bias is not None:
                module.bias.copy_(torch.from_numpy(bias.astype(np.float32)))

        def conv_kernel(layer: str, name: str = "kernel:0") -> np.ndarray:
            return tensor(layer, name).transpose(3, 2, 0, 1)

        def depthwise_kernel(layer: str) -> np.ndarray:
            hwcm = tensor(layer, "depthwise_kernel:0")
            return hwcm.transpose(2, 3, 0, 1).reshape(hwcm.shape[2] * hwcm.shape[3], 1, *hwcm.shape[:2])

        with torch.no_grad():
            set_conv(net.conv1, conv_kernel("conv2d_1"), "batch_normalization_1")
            set_conv(net.conv2, conv_kernel("conv2d_2"), "batch_normalization_2")
            # layer numbering of the Keras graph: block k has shortcut conv2d_{3+k} and
            # batch_normalization_{3+3k}, separable convs {1+2k, 2+2k} with BNs {4+3k, 5+3k}
            for k, block in enumerate(net.blocks):
                set_conv(block.shortcut, conv_kernel(f"conv2d_{3 + k}"), f"batch_normalization_{3 + 3 * k}")
                for sep, number, bn_number in ((block.sep1, 1 + 2 * k, 4 + 3 * k),
                                               (block.sep2, 2 + 2 * k, 5 + 3 * k)):
                    set_conv(sep.depthwise, depthwise_kernel(f"separable_conv2d_{number}"))
                    set_conv(sep.pointwise, conv_kernel(f"separable_conv2d_{number}", "pointwise_kernel:0"),
                             f"batch_normalization_{bn_number}")
            set_conv(net.head, conv_kernel("conv2d_7"), bias=tensor("conv2d_7", "bias:0"))
    # channels_last: several times faster on CPU for these depthwise/pointwise convs (measured)
    return net.to(memory_format=torch.channels_last).eval()
