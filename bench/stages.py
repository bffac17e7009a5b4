"""The stage table: each model of the pipeline (float checkpoints, INT8 TFLite) on the same crops.

Columns: parameters, file size, median latency per crop (1 thread; torch for .pt, LiteRT for .tflite),
exact match / CER on each held-back real DEV part (allowed characters as a user sets them) and on fresh
synthetic meter and label lines. Runs in the workstation venv.

    python bench/stages.py runs/student/last.pt runs/pruned/last.pt models/edgeocr-crnn.tflite
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

SYNTH_SETS = {"synth-meter": (("seg7", "drum"), "0123456789.-"), "synth-label": (("printed", "dotmatrix"), None)}


def _latency_ms(predict, inputs: np.ndarray) -> float:
    predict(inputs[:1])
    times = []
    for x in inputs[:200]:
        t = time.perf_counter()
        predict(x[None])
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help=".pt checkpoints and/or .tflite models")
    parser.add_argument("--real-root", default=str(HERE.parent.parent / "shared" / "data" / "real"))
    parser.add_argument("--synth-count", type=int, default=500)
    args = parser.parse_args()

    import torch

    from convert.charset import CHARSET
    from convert.crnn import count_parameters
    from convert.data import render_shard
    from convert.evaluate import evaluate_arrays, tflite_predictor, torch_predictor
    from convert.data import REAL_SETS
    from convert.train import load_checkpoint, real_eval_sets, spec_for
    from device.card import card_path_for, load_card
    from device.preprocess import scale_pixels

    torch.set_num_threads(1)
    spec, norm = spec_for(192)
    sets = dict(real_eval_sets(args.real_root, spec, norm))
    for name, (kinds, chars) in SYNTH_SETS.items():
        pixels, texts, _ = render_shard(90_000 + len(name), args.synth_count, spec, norm, kinds)
        sets[name] = (pixels, texts, chars, False)
    names = [n for n in list(REAL_SETS) + list(SYNTH_SETS) if n in sets]
    header = f"{'model':34} {'params':>8} {'size KB':>8} {'ms/crop':>8} " + " ".join(f"{n:>15}" for n in names)
    print(header)
    for model_path in map(Path, args.models):
        if model_path.suffix == ".pt":
            model, _ = load_checkpoint(model_path)
            model.eval()
            predict, params = torch_predictor(model, batch_size=64), count_parameters(model)
            size_kb = 4 * params / 1024  # float32 weights
        else:
            card = load_card(card_path_for(model_path))
            predict, params = tflite_predictor(model_path), card.metrics.get("parameters", 0)
            size_kb = model_path.stat().st_size / 1024
        latency = _latency_ms(predict, scale_pixels(sets[names[0]][0][:201], norm))
        cells = []
        for name in names:
            pixels, labels, chars, icase = sets[name]
            score, _ = evaluate_arrays(predict, pixels, labels, CHARSET, norm, chars, icase)
            cells.append(f"{100 * score.exact:6.1f}/{100 * score.cer:5.1f}%")
        label = f"{model_path.parent.name}/{model_path.name}"[-34:]
        print(f"{label:34} {params:8d} {size_kb:8.0f} {latency:8.2f} " + " ".join(f"{c:>15}" for c in cells),
              flush=True)
    print("cells: exact match % / CER %; real sets are the held-back parts (never trained on)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
