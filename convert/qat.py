"""Quantisation-aware fine-tuning: train the float model under the INT8 rounding that the converter applies.

What onnx2tf's full-INT8 export does, simulated in torch with straight-through gradients:
  * weights of every conv and linear layer: symmetric int8 per output channel (max |w| / 127). BatchNorm
    folding scales each output channel, so quantising the unfolded weight per channel is the same grid;
  * activations: asymmetric int8 per tensor (moving-average min/max) at the input, after every
    conv+BN+ReLU block, after each residual add and at the logits.
BatchNorm statistics are frozen (eval mode) so that what is folded is what was trained. The checkpoint
keeps plain float weights; the normal export then quantises them onto the grid the model was tuned for.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize


class _PerChannelWeight(nn.Module):
    """Symmetric int8 fake quantisation per output channel (dim 0), straight-through."""

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        scale = w.detach().abs().flatten(1).amax(dim=1).clamp(min=1e-8) / 127.0
        scale = scale.view(-1, *([1] * (w.dim() - 1)))
        q = torch.clamp(torch.round(w / scale), -127, 127) * scale
        return w + (q - w).detach()


def _activation_fq() -> nn.Module:
    from torch.ao.quantization import FakeQuantize, MovingAverageMinMaxObserver

    return FakeQuantize(observer=MovingAverageMinMaxObserver, quant_min=-128, quant_max=127, dtype=torch.qint8,
                        qscheme=torch.per_tensor_affine, averaging_constant=0.01)


class _Quantised(nn.Module):
    """Wrap a module so that its output is fake-quantised."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.fq_out = _activation_fq()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fq_out(self.inner(x))


def prepare_qat(model: nn.Module) -> nn.Module:
    """Return a QAT wrapper around ``model`` (shared weights; ``plain_state_dict`` saves them unwrapped)."""
    if getattr(model.cfg, "sequence", "conv") != "conv":
        raise ValueError("quantisation-aware fine-tuning covers the conv-sequence student only")
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)) and not parametrize.is_parametrized(module, "weight"):
            parametrize.register_parametrization(module, "weight", _PerChannelWeight())
    return QATModel(model)


class QATModel(nn.Module):
    """The CRNN forward with fake quantisation at every tensor the INT8 graph stores."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        feats = model.backbone.features
        self.blocks = nn.ModuleList(_Quantised(m) if isinstance(m, nn.Sequential) else m for m in feats)
        self.fq_input = _activation_fq()
        self.proj = _Quantised(model.sequence.proj)
        self.seq_blocks = nn.ModuleList(_Quantised(b) for b in model.sequence.blocks)
        self.fq_adds = nn.ModuleList(_activation_fq() for _ in model.sequence.blocks)
        self.head = _Quantised(model.head)
        self.cfg = model.cfg

    def train(self, mode: bool = True) -> "QATModel":
        super().train(mode)
        for module in self.model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()  # frozen statistics: what the converter folds
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fq_input(x)
        for block in self.blocks:
            x = block(x)
        x = self.proj(x)
        for block, fq in zip(self.seq_blocks, self.fq_adds):
            x = fq(x + block(x))
        return self.head(x.squeeze(2).permute(0, 2, 1))

