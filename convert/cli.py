"""``edgeocr-convert``: synth | train | distill | prune | export | eval | finetune (workstation tooling)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

logger = logging.getLogger("edgeocr-convert")


def _progress(iterable, total: int, desc: str):
    try:
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=desc, unit="shard", file=sys.stderr)
    except ImportError:
        return iterable


def _render_one(args: tuple) -> str:
    from convert.data import render_shard, save_shard
    from convert.train import spec_for

    path, seed, count, width, kinds = args
    spec, norm = spec_for(width)
    images, texts, sample_kinds = render_shard(seed, count, spec, norm, kinds)
    save_shard(Path(path), images, texts, sample_kinds)
    return path


def cmd_synth(args: argparse.Namespace) -> int:
    """Render synthetic shards (already preprocessed to the model input) into a folder."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    kinds = tuple(args.kinds.split(",")) if args.kinds else None
    jobs = [(str(out / f"shard-{args.seed + i:05d}.npz"), args.seed + i, args.per_shard, args.width, kinds)
            for i in range(args.shards) if not (out / f"shard-{args.seed + i:05d}.npz").exists()]
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for _ in _progress(pool.map(_render_one, jobs), len(jobs), "synth"):
            pass
    logger.info("%d shards in %s", len(list(out.glob("shard-*.npz"))), out)
    return 0


def _train_config(args: argparse.Namespace, **extra):
    from convert.train import TrainConfig

    synth = tuple(sorted(str(p) for d in args.synth for p in Path(d).glob("shard-*.npz")))
    return TrainConfig(out=args.out, preset=args.preset, width=args.width, synth=synth, real_root=args.real_root or "",
                       real_weight=args.real_weight, stitched=args.stitched, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                       threads=args.threads, seed=args.seed, eval_every=args.eval_every, qat=args.qat, **extra)


def cmd_train(args: argparse.Namespace) -> int:
    """Train a CRNN with CTC (resumes from OUT/last.pt)."""
    from convert.train import train

    extra = {"init": args.init} if getattr(args, "init", None) else {}
    if getattr(args, "teacher", None):
        extra.update(teacher=args.teacher, kd_weight=args.kd_weight, temperature=args.temperature)
    train(_train_config(args, **extra))
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    """Remove the weakest backbone channels; write a checkpoint to fine-tune with ``train --init``."""
    from convert.crnn import count_parameters
    from convert.prune import prune_channels
    from convert.train import TrainConfig, lineage_of, load_checkpoint, save_checkpoint

    model, state = load_checkpoint(args.checkpoint)
    pruned = prune_channels(model, args.fraction)
    save_checkpoint(Path(args.out), pruned, 0, TrainConfig(out=str(Path(args.out).parent), init=args.checkpoint),
                    lineage={"pruned": {"fraction": args.fraction, "from": lineage_of(state)}})
    print(json.dumps({"from": args.checkpoint, "parameters_before": count_parameters(model),
                      "parameters_after": count_parameters(pruned), "channels": list(pruned.cfg.channels)}))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Checkpoint -> ONNX -> full-INT8 TFLite + card, with the parity check."""
    import numpy as np

    from convert.data import load_shards, render_shard
    from convert.export import ExportError, export
    from convert.train import load_checkpoint, spec_for

    model, state = load_checkpoint(args.checkpoint)
    spec, norm = spec_for(model.cfg.width)
    if args.calib:
        calib, _, _ = load_shards([Path(args.calib)])
    else:
        calib, _, _ = render_shard(10_001, args.calib_count, spec, norm)
    parity_px, parity_labels, _ = render_shard(20_002, args.parity_count, spec, norm)
    rng = np.random.default_rng(0)
    calib = calib[rng.permutation(len(calib))[: args.calib_count]]
    if args.calib_real:  # the train part of every real folder joins the representative set (never the held-back)
        from convert.data import REAL_SETS, load_labels_split

        real = [load_labels_split(Path(args.calib_real) / folder, spec, norm)[0][0]
                for folder, _, _ in REAL_SETS.values() if (Path(args.calib_real) / folder / "labels.tsv").is_file()]
        calib = np.concatenate([calib, *real])
    try:
        card, result, ops = export(model, Path(args.out), calib, parity_px, parity_labels, name=args.name,
                                   recipe={"rebuild": "scripts/build_model.sh", "checkpoint_recipe": state.get("recipe", {}),
                                           "step": state.get("step"), "lineage": state.get("lineage", {}),
                                           "calibration": {"synthetic": args.calib or "rendered", "count": args.calib_count,
                                                           "real_train_parts": bool(args.calib_real)},
                                           "data": "synthetic shards (convert/synth.py) + train part of the "
                                                   "real DEV folders + real digits stitched into lines"})
    except ExportError as exc:
        print(f"edgeocr-convert: error: {exc}", file=sys.stderr)
        return 1
    if args.real_root:
        _real_metrics_into_card(model, Path(args.out), args.real_root, state)
    print(json.dumps({"model": args.out, "bytes": Path(args.out).stat().st_size, "sha256": card.sha256,
                      "parity": result.__dict__, "ops": sorted({op for op, _ in ops})}, indent=2))
    return 0


def _real_metrics_into_card(model, out: Path, real_root: str, state: dict) -> None:
    """Score float and INT8 on the held-back real parts; record them (and the training history) in the card."""
    from dataclasses import asdict

    from convert.charset import CHARSET
    from convert.evaluate import evaluate_arrays, tflite_predictor, torch_predictor
    from convert.export import write_card
    from convert.train import real_eval_sets, spec_for
    from device.card import card_path_for, load_card

    spec, norm = spec_for(model.cfg.width)
    card = load_card(card_path_for(out))
    real = {}
    for name, (pixels, labels, chars, icase) in real_eval_sets(real_root, spec, norm).items():
        f, _ = evaluate_arrays(torch_predictor(model), pixels, labels, CHARSET, norm, chars, icase)
        q, _ = evaluate_arrays(tflite_predictor(out), pixels, labels, CHARSET, norm, chars, icase)
        real[name] = {"n": f.n, "chars": chars, "ignore_case": icase, "float": asdict(f), "int8": asdict(q)}
        logger.info("held-back %s: float %s  INT8 %s", name, f.row(), q.row())
    metrics = {k: v for k, v in card.metrics.items() if k not in ("parameters", "file_bytes")}
    metrics["real_held_back"] = real
    write_card(out, model, card.name, metrics, card.recipe | {"training_history": state.get("history", [])[-3:]})


def cmd_eval(args: argparse.Namespace) -> int:
    """Score a backend (.pt checkpoint, .onnx, .tflite) on labels.tsv folders."""
    from convert.data import load_pixels, read_labels, split_labels
    from convert.evaluate import evaluate_arrays, onnx_predictor, tflite_predictor, torch_predictor
    from convert.train import load_checkpoint, spec_for
    from device.card import load_card, card_path_for

    model_path = Path(args.model)
    if model_path.suffix == ".pt":
        model, _ = load_checkpoint(model_path)
        predict, width, charset = torch_predictor(model), model.cfg.width, None
    elif model_path.suffix == ".onnx":
        card = load_card(card_path_for(model_path))
        predict, width, charset = onnx_predictor(model_path), card.input.width, card.charset
    else:
        card = load_card(card_path_for(model_path))
        predict, width, charset = tflite_predictor(model_path), card.input.width, card.charset
    from convert.charset import CHARSET

    spec, norm = spec_for(width)
    rows = []
    for folder in args.folders:
        labelled = read_labels(Path(folder))
        if args.held_back:
            labelled = split_labels(labelled)[1]
        pixels, labels = load_pixels(labelled, spec, norm)
        score, _ = evaluate_arrays(predict, pixels, labels, charset or CHARSET, norm, args.chars, args.ignore_case)
        rows.append({"folder": folder, "n": score.n, "exact": round(score.exact, 4), "cer": round(score.cer, 4)})
        print(json.dumps(rows[-1]), flush=True)
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    """The user's labelled crops -> a new INT8 model + card, with a before/after report."""
    from convert.export import ExportError
    from convert.finetune import finetune
    from device.recognize import default_model_path

    base = Path(args.base) if args.base else default_model_path().with_suffix(".pt")
    if not base.is_file():
        print(f"edgeocr-convert: error: {base}: float weights of the base model not found (give --base)", file=sys.stderr)
        return 2
    try:
        report = finetune(Path(args.folder), Path(args.out), base, steps=args.steps, lr=args.lr, chars=args.chars,
                          threads=args.threads)
    except (ValueError, FileNotFoundError, ExportError) as exc:
        print(f"edgeocr-convert: error: {exc}", file=sys.stderr)
        return 1
    print(f"held-back crops of {args.folder}: n={report.n_eval} (trained on {report.n_train})")
    print(f"{'model':24} {'exact':>7} {'CER':>7}")
    for name, s in (("before (base, float)", report.before), ("after (float)", report.after),
                    ("after (INT8, shipped)", report.int8)):
        print(f"{name:24} {100 * s.exact:6.1f}% {100 * s.cer:6.1f}%")
    print(f"new model: {report.model} (+ card {Path(report.model).with_suffix('.json')})")
    return 0


def cmd_slim(args: argparse.Namespace) -> int:
    """Strip a checkpoint to what inference and fine-tuning need (fp16 weights, no optimizer)."""
    import torch

    state = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    slim = {k: state[k] for k in ("model_args", "charset", "blank_index", "input", "normalisation", "step",
                                  "recipe", "history", "parameters")}
    slim["state_dict"] = {k: v.half() if v.is_floating_point() else v for k, v in state["state_dict"].items()}
    torch.save(slim, args.out)
    print(f"{args.out}: {Path(args.out).stat().st_size} bytes")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``edgeocr-convert`` argument parser."""
    parser = argparse.ArgumentParser(prog="edgeocr-convert", description="Train and export edgeocr recognizers.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="render synthetic training shards")
    p.add_argument("--out", required=True)
    p.add_argument("--shards", type=int, default=40)
    p.add_argument("--per-shard", type=int, default=5000)
    p.add_argument("--width", type=int, default=192)
    p.add_argument("--kinds", help="comma-separated kinds (default: the weighted mix)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.set_defaults(func=cmd_synth)

    for name, helptext in (("train", "train a CRNN with CTC"), ("distill", "train a student from a teacher")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--out", required=True, help="run folder (checkpoints: OUT/last.pt; resumes)")
        p.add_argument("--preset", default="student")
        p.add_argument("--width", type=int, default=192)
        p.add_argument("--synth", nargs="*", default=[], help="folders of synth shards")
        p.add_argument("--real-root", help="root of real labelled folders (their held-back part never trains)")
        p.add_argument("--real-weight", type=float, default=0.15)
        p.add_argument("--stitched", type=int, default=0,
                       help="lines stitched from real single-digit crops (train part only) per digit folder")
        p.add_argument("--steps", type=int, default=20000)
        p.add_argument("--batch-size", type=int, default=64)
        p.add_argument("--lr", type=float, default=2e-3)
        p.add_argument("--threads", type=int, default=2)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--eval-every", type=int, default=1000)
        p.add_argument("--init", help="start from this checkpoint's weights")
        if name == "distill":
            p.add_argument("--teacher", required=True)
            p.add_argument("--kd-weight", type=float, default=0.5)
            p.add_argument("--temperature", type=float, default=2.0)
        p.add_argument("--qat", action="store_true",
                       help="quantisation-aware: train under simulated INT8 weights and activations")
        p.set_defaults(func=cmd_train)

    p = sub.add_parser("prune", help="structured channel pruning (then fine-tune with train --init)")
    p.add_argument("checkpoint")
    p.add_argument("--fraction", type=float, default=0.3)
    p.add_argument("--out", required=True, help="pruned checkpoint (.pt)")
    p.set_defaults(func=cmd_prune)

    p = sub.add_parser("export", help="checkpoint -> full-INT8 TFLite + card (fails on parity)")
    p.add_argument("checkpoint")
    p.add_argument("--out", required=True, help="NAME.tflite (the card NAME.json is written beside it)")
    p.add_argument("--name")
    p.add_argument("--calib", help="a synth shard for calibration (default: render one)")
    p.add_argument("--calib-count", type=int, default=500)
    p.add_argument("--calib-real", metavar="REAL_ROOT",
                   help="also calibrate on the train part of the real folders under REAL_ROOT")
    p.add_argument("--parity-count", type=int, default=300)
    p.add_argument("--real-root", help="also score float and INT8 on the held-back real parts; stored in the card")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("finetune", help="your labelled crops (labels.tsv) -> new INT8 model + card")
    p.add_argument("folder", help="a folder with labels.tsv (relative_path<TAB>text)")
    p.add_argument("--out", default="models/finetuned.tflite")
    p.add_argument("--base", help="float checkpoint to start from (default: the shipped model's .pt)")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--chars", help="allowed characters for the before/after report")
    p.add_argument("--threads", type=int, default=2)
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser("slim", help="fp16 weights-only copy of a checkpoint (ships beside the model)")
    p.add_argument("checkpoint")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_slim)

    p = sub.add_parser("eval", help="score a .pt/.onnx/.tflite on labels.tsv folders")
    p.add_argument("model")
    p.add_argument("folders", nargs="+")
    p.add_argument("--chars")
    p.add_argument("--ignore-case", action="store_true")
    p.add_argument("--held-back", action="store_true", help="only the held-back part of each folder")
    p.set_defaults(func=cmd_eval)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``edgeocr-convert``."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
