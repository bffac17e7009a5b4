"""CTC training (and distillation from a teacher) with resumable, self-describing checkpoints."""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from convert.charset import BLANK_INDEX, CHARSET, encode
from convert.crnn import CRNN, CRNNConfig, build, count_parameters
from convert.data import (REAL_SETS, TrainBatches, load_labels_split, load_shards, read_labels, split_labels,
                          stitch_lines)
from convert.evaluate import Score, evaluate_arrays, torch_predictor
from device.card import InputSpec, Normalisation

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class TrainConfig:
    """One training run (saved in the checkpoint as the recipe)."""

    out: str
    preset: str = "student"
    width: int = 192
    synth: tuple[str, ...] = ()
    real_root: str = ""
    real_weight: float = 0.15
    stitched: int = 0
    steps: int = 20000
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    threads: int = 2
    seed: int = 0
    eval_every: int = 1000
    checkpoint_every: int = 250
    teacher: str = ""
    kd_weight: float = 0.5
    temperature: float = 2.0
    init: str = ""
    qat: bool = False
    overrides: dict = field(default_factory=dict)


def spec_for(width: int) -> tuple[InputSpec, Normalisation]:
    """The input geometry and normalisation every edgeocr model uses."""
    return InputSpec(height=32, width=width, channels=1, dynamic_width=False), Normalisation()


def save_checkpoint(path: Path, model: CRNN, step: int, cfg: TrainConfig, optimizer=None, scheduler=None,
                    history: list | None = None, lineage: dict | None = None) -> None:
    """Write a checkpoint that can rebuild its model without any other file (atomic replace)."""
    state = {
        "model_args": model.cfg.to_dict(),
        "charset": CHARSET,
        "blank_index": BLANK_INDEX,
        "input": asdict(spec_for(model.cfg.width)[0]),
        "normalisation": asdict(spec_for(model.cfg.width)[1]),
        "state_dict": plain_state_dict(model),
        "step": step,
        "recipe": asdict(cfg),
        "history": history or [],
        "optimizer": optimizer.state_dict() if optimizer else None,
        "scheduler": scheduler.state_dict() if scheduler else None,
        "parameters": count_parameters(model),
        "lineage": lineage or {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def plain_state_dict(model: torch.nn.Module) -> dict:
    """The state dict with quantisation-aware parametrisations unwrapped (``x.weight``, the float weights)."""
    return {k.replace(".parametrizations.weight.original", ".weight"): v for k, v in model.state_dict().items()}


def load_checkpoint(path: Path | str) -> tuple[CRNN, dict]:
    """Rebuild the model from a checkpoint; return it with the raw checkpoint dict."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    model = CRNN(CRNNConfig.from_dict(state["model_args"]))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state["state_dict"].items()})
    return model, state


def lineage_of(state: dict) -> dict:
    """What a checkpoint came from: its recipe, step and parameters, and (recursively) its init and teacher."""
    return {"recipe": {k: v for k, v in state.get("recipe", {}).items() if k != "synth"},
            "synth": sorted({str(Path(p).parent) for p in state.get("recipe", {}).get("synth", ())}),
            "step": state.get("step"), "parameters": state.get("parameters"), **state.get("lineage", {})}


def ctc_loss(logits: torch.Tensor, texts: list[str]) -> torch.Tensor:
    """Mean CTC loss of ``B x T x C`` logits against the texts."""
    log_probs = F.log_softmax(logits, dim=-1).permute(1, 0, 2)  # B x T x C -> T x B x C
    targets = [torch.tensor(encode(t), dtype=torch.long) for t in texts]
    target_lengths = torch.tensor([len(t) for t in targets], dtype=torch.long)
    input_lengths = torch.full((logits.shape[0],), logits.shape[1], dtype=torch.long)
    return F.ctc_loss(log_probs, torch.cat(targets), input_lengths, target_lengths, blank=BLANK_INDEX,
                      zero_infinity=True)


def distill_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Temperature-scaled KL(teacher || student) over per-frame posteriors (same frame count), times T^2."""
    t = temperature
    teacher = F.log_softmax(teacher_logits / t, dim=-1)
    student = F.log_softmax(student_logits / t, dim=-1)
    return F.kl_div(student, teacher, log_target=True, reduction="batchmean") / student_logits.shape[1] * t * t


def real_eval_sets(root: str, spec: InputSpec, norm: Normalisation) -> dict[str, tuple]:
    """Held-back parts of the real DEV folders, preprocessed once: name -> (pixels, labels, chars, ignore_case)."""
    sets = {}
    if not root:
        return sets
    for name, (folder, chars, ignore_case) in REAL_SETS.items():
        path = Path(root) / folder
        if not (path / "labels.tsv").is_file():
            logger.warning("real set %s not found under %s: skipped", name, root)
            continue
        _, (pixels, labels) = load_labels_split(path, spec, norm)
        sets[name] = (pixels, labels, chars, ignore_case)
    return sets


def evaluate_real(model: CRNN, sets: dict[str, tuple], norm: Normalisation) -> dict[str, Score]:
    """Score a torch model on the held-back real parts."""
    predict = torch_predictor(model)
    return {name: evaluate_arrays(predict, px, labels, CHARSET, norm, chars, icase)[0]
            for name, (px, labels, chars, icase) in sets.items()}


def _network(model: CRNN, cfg: TrainConfig) -> torch.nn.Module:
    """What the loop trains: the model itself, or its quantisation-aware wrapper (shared weights)."""
    if not cfg.qat:
        return model
    from convert.qat import prepare_qat

    return prepare_qat(model)


def _optimizer(model: CRNN, cfg: TrainConfig):
    """AdamW with a one-cycle schedule over ``cfg.steps`` (5 % warm-up, at least 2 steps)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=max(cfg.steps, 4),
                                                    pct_start=max(0.05, 2.0 / max(cfg.steps, 4)))
    return optimizer, scheduler


def train(cfg: TrainConfig) -> Path:
    """Train (or resume) a CRNN; returns the path of the last checkpoint."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    last = out / "last.pt"
    spec, norm = spec_for(cfg.width)

    model = build(cfg.preset, len(CHARSET) + 1, cfg.width, **cfg.overrides)
    lineage = {}
    if cfg.init:
        model, init_state = load_checkpoint(cfg.init)
        lineage["init"] = lineage_of(init_state)
    state = None
    if last.is_file():
        model, state = load_checkpoint(last)
    net = _network(model, cfg)
    optimizer, scheduler = _optimizer(model, cfg)
    step, history = 0, []
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        step, history = state["step"], state["history"]
        if state["recipe"].get("steps") == cfg.steps:
            scheduler.load_state_dict(state["scheduler"])
        else:  # a longer (or shorter) run: the same optimizer state on the new schedule, at the same step
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for _ in range(min(step, cfg.steps)):
                    scheduler.step()
        logger.info("resumed %s at step %d of %d", last, step, cfg.steps)
    teacher = None
    if cfg.teacher:
        teacher, teacher_state = load_checkpoint(cfg.teacher)
        teacher.eval()
        lineage["teacher"] = lineage_of(teacher_state)
    logger.info("model %s: %d parameters", cfg.preset, count_parameters(model))

    synth_images, synth_texts, _ = load_shards([Path(p) for p in cfg.synth]) if cfg.synth else (None, [], [])
    pools = {"synth": (synth_images, synth_texts)} if synth_texts else {}
    weights = {"synth": 1.0 - cfg.real_weight}
    eval_sets = real_eval_sets(cfg.real_root, spec, norm)
    if cfg.real_root:
        for name, (folder, _, _) in REAL_SETS.items():
            path = Path(cfg.real_root) / folder
            if (path / "labels.tsv").is_file():
                (pixels, labels), _ = load_labels_split(path, spec, norm)
                pools[f"real:{name}"] = (pixels, labels)
                weights[f"real:{name}"] = cfg.real_weight / len(REAL_SETS)
                if name in ("lcd-digits", "rolling-digits") and cfg.stitched:
                    train_rows, _ = split_labels(read_labels(path))
                    rng = np.random.default_rng(cfg.seed)
                    pools[f"stitched:{name}"] = stitch_lines(rng, train_rows, cfg.stitched, spec, norm)
                    weights[f"stitched:{name}"] = cfg.real_weight / 2
    if not pools:
        raise ValueError("no training data: give --synth shards and/or --real-root")
    batches = iter(TrainBatches(pools, weights, cfg.batch_size, cfg.seed + step))

    net.train()
    started, seen = time.time(), 0
    while step < cfg.steps:
        images, texts = next(batches)
        x = torch.from_numpy(images).float().div_(255.0).unsqueeze(1)  # B x H x W -> B x 1 x H x W
        x = (x - norm.mean) / norm.std
        logits = net(x)
        loss = ctc_loss(logits, texts)
        if teacher is not None:
            with torch.no_grad():
                teacher_logits = teacher(x)
            loss = (1 - cfg.kd_weight) * loss + cfg.kd_weight * distill_loss(logits, teacher_logits, cfg.temperature)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        scheduler.step()
        step += 1
        seen += len(texts)
        if step % 50 == 0:
            rate = seen / (time.time() - started)
            logger.info("step %d/%d loss %.4f lr %.2e %.0f samples/s", step, cfg.steps, loss.item(),
                        scheduler.get_last_lr()[0], rate)
        if step % cfg.eval_every == 0 or step == cfg.steps:
            scores = evaluate_real(model, eval_sets, norm)
            net.train()
            history.append({"step": step, **{k: asdict(v) for k, v in scores.items()}})
            logger.info("step %d held-back real: %s", step, "  ".join(f"{k} {v.row()}" for k, v in scores.items()))
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            save_checkpoint(last, model, step, cfg, optimizer, scheduler, history, lineage)
    return last
