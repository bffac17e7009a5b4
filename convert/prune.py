"""Structured (channel) pruning of the CRNN backbone, network-slimming style.

Each prunable conv's output channels are ranked by |BatchNorm gamma|; the weakest fraction is removed
from that conv (outputs, BN) and from the next conv (inputs). The result is a smaller dense CRNN with a
new ``channels`` tuple, so the INT8 file gets smaller and faster; fine-tune it afterwards.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from convert.crnn import CRNN

# Indices into Backbone.features of the conv_bn blocks for channels c1..c5; c6 feeds two convs and the
# sequence module, so it is kept.
_PRUNABLE = (0, 2, 4, 5, 7)
_NEXT = {0: 2, 2: 4, 4: 5, 5: 7, 7: 8}


def _keep(block: nn.Sequential, fraction: float, avoid: set[int], multiple: int = 4) -> torch.Tensor:
    gamma = block[1].weight.detach().abs()
    n = gamma.numel()
    keep = max(multiple, int(round(n * (1 - fraction) / multiple)) * multiple)
    while keep in avoid and keep + multiple <= n:
        keep += multiple  # a channel count equal to a spatial size makes onnx2tf's layout guess ambiguous
    return torch.sort(torch.topk(gamma, min(keep, n)).indices).values


def _slice_conv_bn(block: nn.Sequential, out_idx: torch.Tensor | None, in_idx: torch.Tensor | None) -> nn.Sequential:
    conv, bn = block[0], block[1]
    weight = conv.weight.detach()
    if out_idx is not None:
        weight = weight[out_idx]
    if in_idx is not None:
        weight = weight[:, in_idx]
    new_conv = nn.Conv2d(weight.shape[1], weight.shape[0], conv.kernel_size, padding=conv.padding, bias=False)
    new_conv.weight.data.copy_(weight)
    new_bn = nn.BatchNorm2d(weight.shape[0])
    idx = out_idx if out_idx is not None else torch.arange(bn.num_features)
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(new_bn, name).data.copy_(getattr(bn, name).detach()[idx])
    return nn.Sequential(new_conv, new_bn, nn.ReLU(inplace=True))


def prune_channels(model: CRNN, fraction: float) -> CRNN:
    """Return a new CRNN with ``fraction`` of the channels of c1..c5 removed (weights carried over)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction = {fraction}: expected 0 < fraction < 1")
    feats = model.backbone.features
    width = model.cfg.width
    avoid = {32, 16, 8, 4, 2, width, width // 2, width // 4}  # every H and W the feature maps take
    keep = {i: _keep(feats[i], fraction, avoid) for i in _PRUNABLE}
    channels = list(model.cfg.channels)
    for position, i in enumerate(_PRUNABLE):
        channels[position] = int(keep[i].numel())
    extra = {**model.cfg.extra, "pruned_from": list(model.cfg.channels), "prune_fraction": fraction}
    pruned = CRNN(replace(model.cfg, channels=tuple(channels), extra=extra))
    new_feats = pruned.backbone.features
    previous_out = {nxt: keep[i] for i, nxt in _NEXT.items()}
    for i, block in enumerate(feats):
        if not isinstance(block, nn.Sequential):
            continue
        new_feats[i] = _slice_conv_bn(block, keep.get(i), previous_out.get(i))
    pruned.sequence.load_state_dict(model.sequence.state_dict())
    pruned.head.load_state_dict(model.head.state_dict())
    return pruned
