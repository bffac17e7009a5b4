"""``edgeocr-convert finetune DIR``: a user's own labelled crops -> a new INT8 model + card, in one command.

Starts from the shipped model's float weights (``models/edgeocr-crnn.pt``), keeps a fixed part of DIR
for a before/after report, mixes the user's crops with synthetic data (so the model does not forget
what it could read), exports with the same parity budget as the shipped model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from convert.charset import CHARSET
from convert.data import TrainBatches, load_pixels, read_labels, render_shard, split_labels
from convert.evaluate import Score, evaluate_arrays, torch_predictor
from convert.train import ctc_loss, load_checkpoint, save_checkpoint, spec_for, TrainConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FinetuneReport:
    """Scores on the user's held-back crops before and after, and where the new model went."""

    before: Score
    after: Score
    int8: Score
    model: str
    n_train: int
    n_eval: int


def finetune(data_dir: Path, out: Path, base: Path, steps: int = 1500, lr: float = 5e-4, batch_size: int = 32,
             chars: str | None = None, threads: int = 2, seed: int = 0) -> FinetuneReport:
    """Fine-tune ``base`` (a .pt checkpoint) on ``data_dir/labels.tsv``; export ``out`` (.tflite + card)."""
    from convert.evaluate import tflite_predictor
    from convert.export import export

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model, _ = load_checkpoint(base)
    spec, norm = spec_for(model.cfg.width)
    train_rows, eval_rows = split_labels(read_labels(data_dir), fraction=0.2)
    if not train_rows or not eval_rows:
        raise ValueError(f"{data_dir}/labels.tsv: expected at least 5 usable rows (got {len(train_rows) + len(eval_rows)})")
    train_px, train_texts = load_pixels(train_rows, spec, norm)
    eval_px, eval_texts = load_pixels(eval_rows, spec, norm)
    before, _ = evaluate_arrays(torch_predictor(model), eval_px, eval_texts, CHARSET, norm, chars)
    synth_px, synth_texts, _ = render_shard(seed + 77, 4000, spec, norm)
    batches = iter(TrainBatches({"user": (train_px, train_texts), "synth": (synth_px, synth_texts)},
                                {"user": 0.6, "synth": 0.4}, batch_size, seed))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.1)
    model.train()
    for step in range(1, steps + 1):
        images, texts = next(batches)
        x = (torch.from_numpy(images).float().div_(255.0).unsqueeze(1) - norm.mean) / norm.std
        loss = ctc_loss(model(x), texts)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        scheduler.step()
        if step % 100 == 0:
            logger.info("finetune step %d/%d loss %.4f", step, steps, loss.item())
    model.eval()
    after, _ = evaluate_arrays(torch_predictor(model), eval_px, eval_texts, CHARSET, norm, chars)
    out = Path(out)
    save_checkpoint(out.with_suffix(".pt"), model, steps, TrainConfig(out=str(out.parent), init=str(base)))
    calib = np.concatenate([train_px, synth_px[:400]])
    export(model, out, calib, np.concatenate([eval_px, synth_px[-200:]]), eval_texts + synth_texts[-200:],
           name=out.stem, recipe={"finetune": {"data": str(data_dir), "base": str(base), "steps": steps, "lr": lr}})
    int8, _ = evaluate_arrays(tflite_predictor(out), eval_px, eval_texts, CHARSET, norm, chars)
    return FinetuneReport(before, after, int8, str(out), len(train_texts), len(eval_texts))
