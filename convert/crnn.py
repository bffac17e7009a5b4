"""The CRNN: ``backbone`` (CNN) -> ``sequence`` (BiLSTM / BiGRU / conv) -> ``head`` (per-frame classes).

Export-friendly by construction: fixed pools (no adaptive pooling), no grid sampling, logits only.
Input ``B x 1 x 32 x W`` -> output ``B x W/4 x classes`` (raw logits; CTC takes log_softmax in training).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn


@dataclass(frozen=True)
class CRNNConfig:
    """Everything needed to rebuild the network (saved in every checkpoint)."""

    num_classes: int
    height: int = 32
    width: int = 192
    channels: tuple[int, ...] = (24, 48, 64, 64, 96, 96)
    sequence: str = "conv"  # conv | bilstm | gru
    hidden: int = 96
    layers: int = 3
    conv_kernel: int = 5
    dropout: float = 0.1
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Plain dict (tuples as lists) for JSON/checkpoints."""
        data = asdict(self)
        data["channels"] = list(self.channels)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "CRNNConfig":
        """Inverse of ``to_dict``."""
        data = dict(data)
        data["channels"] = tuple(data["channels"])
        return cls(**data)


PRESETS: dict[str, dict] = {
    # ~0.39 M parameters: the shipped student (conv-only sequence: full INT8, any width).
    "student": {"channels": (24, 48, 64, 64, 96, 96), "sequence": "conv", "hidden": 96, "layers": 3},
    "student-lstm": {"channels": (24, 48, 64, 64, 96, 96), "sequence": "bilstm", "hidden": 64},
    "student-gru": {"channels": (24, 48, 64, 64, 96, 96), "sequence": "gru", "hidden": 64},
    # ~1.2 M parameters: the teacher (3x the student; sized so that it trains in about an hour on 2 cores).
    "teacher": {"channels": (32, 64, 96, 96, 144, 144), "sequence": "bilstm", "hidden": 128, "layers": 2},
    # ~30 k parameters: for export tests only.
    "tiny": {"channels": (8, 16, 16, 16, 24, 24), "sequence": "bilstm", "hidden": 16},
    "tiny-conv": {"channels": (8, 16, 16, 16, 24, 24), "sequence": "conv", "hidden": 24, "layers": 1},
}


def conv_bn(c_in: int, c_out: int, kernel: tuple[int, int] = (3, 3), padding: tuple[int, int] = (1, 1)) -> nn.Sequential:
    """Conv -> BatchNorm -> ReLU (fused into one INT8 conv by the converter)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, padding=padding, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)
    )


class Backbone(nn.Module):
    """VGG-style CNN that collapses the height 32 -> 1 and the width W -> W/4."""

    def __init__(self, channels: tuple[int, ...], height: int):
        super().__init__()
        if height != 32 or len(channels) != 6:
            raise ValueError("Backbone expects height 32 and six channel widths")
        c1, c2, c3, c4, c5, c6 = channels
        self.features = nn.Sequential(
            conv_bn(1, c1), nn.MaxPool2d(2, 2),  # 32 x W -> 16 x W/2
            conv_bn(c1, c2), nn.MaxPool2d(2, 2),  # -> 8 x W/4
            conv_bn(c2, c3), conv_bn(c3, c4), nn.MaxPool2d((2, 1), (2, 1)),  # -> 4 x W/4
            conv_bn(c4, c5), conv_bn(c5, c6), nn.MaxPool2d((2, 1), (2, 1)),  # -> 2 x W/4
            conv_bn(c6, c6, kernel=(2, 1), padding=(0, 0)),  # -> 1 x W/4
        )
        self.out_channels = c6

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # B x 1 x 32 x W -> B x C x 1 x W/4


class RecurrentSequence(nn.Module):
    """Bidirectional LSTM or GRU over the frames."""

    def __init__(self, c_in: int, hidden: int, layers: int, kind: str, dropout: float):
        super().__init__()
        rnn = nn.LSTM if kind == "bilstm" else nn.GRU
        self.rnn = rnn(c_in, hidden, num_layers=layers, bidirectional=True, batch_first=True,
                       dropout=dropout if layers > 1 else 0.0)
        self.out_channels = 2 * hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = x.squeeze(2).permute(0, 2, 1)  # B x C x 1 x T -> B x T x C
        out, _ = self.rnn(seq)  # B x T x 2H
        return out


class ConvSequence(nn.Module):
    """Conv-only context: residual 1 x k convolutions over the frames (works with a dynamic width)."""

    def __init__(self, c_in: int, hidden: int, layers: int, kernel: int):
        super().__init__()
        self.proj = conv_bn(c_in, hidden, kernel=(1, 1), padding=(0, 0))
        self.blocks = nn.ModuleList(
            conv_bn(hidden, hidden, kernel=(1, kernel), padding=(0, kernel // 2)) for _ in range(layers)
        )
        self.out_channels = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)  # B x C x 1 x T -> B x H x 1 x T
        for block in self.blocks:
            x = x + block(x)
        return x.squeeze(2).permute(0, 2, 1)  # B x H x 1 x T -> B x T x H


class CRNN(nn.Module):
    """CNN + sequence + CTC head; ``forward`` returns logits ``B x T x classes``."""

    def __init__(self, cfg: CRNNConfig):
        super().__init__()
        self.cfg = cfg
        self.backbone = Backbone(cfg.channels, cfg.height)
        c = self.backbone.out_channels
        if cfg.sequence in ("bilstm", "gru"):
            self.sequence = RecurrentSequence(c, cfg.hidden, cfg.layers, cfg.sequence, cfg.dropout)
        elif cfg.sequence == "conv":
            self.sequence = ConvSequence(c, cfg.hidden, cfg.layers, cfg.conv_kernel)
        else:
            raise ValueError(f"sequence = {cfg.sequence!r}: expected bilstm, gru or conv")
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(self.sequence.out_channels, cfg.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone(x)  # B x 1 x 32 x W -> B x C x 1 x T
        seq = self.sequence(features)  # -> B x T x H
        return self.head(self.dropout(seq))  # -> B x T x classes


def build(preset: str, num_classes: int, width: int = 192, **overrides) -> CRNN:
    """A CRNN from a named preset (``student``, ``teacher``, ``tiny`` ...) with optional overrides."""
    if preset not in PRESETS:
        raise ValueError(f"preset {preset!r}: expected one of {', '.join(PRESETS)}")
    args = {**PRESETS[preset], **overrides}
    return CRNN(CRNNConfig(num_classes=num_classes, width=width, extra={"preset": preset}, **args))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
