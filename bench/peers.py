"""Accuracy and speed of edgeocr's shipped INT8 model against the OCR engines a user would pick instead.

Each engine runs in its own subprocess (fair peak RSS, no shared imports) over the same crops, with the
same allowed characters, 1 thread. Prints a table: exact match, CER, median ms per crop, ratio of the
median latency to edgeocr's, and peak RSS.

    python bench/peers.py [--real-root ../shared/data/real] [--held-back] [--engines edgeocr,tesseract,rapidocr]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

def _rows(root: Path, folder: str, held_back: bool) -> list[tuple[str, str]]:
    from convert.data import read_labels, split_labels

    rows = read_labels(root / folder)
    if held_back:
        rows = split_labels(rows)[1]
    return [(str(r.path), r.text) for r in rows]


def _keep(text: str, chars: str | None) -> str:
    text = text.strip()
    return "".join(c for c in text if c in chars) if chars else text.replace(" ", "")


def worker_edgeocr(rows, chars):
    import cv2  # noqa: F401  (import cost outside the timed loop)

    from device.preprocess import load_image
    from device.recognize import Recognizer

    rec = Recognizer(num_threads=1)
    images = [load_image(p) for p, _ in rows]
    rec.read(images[0], chars)
    out, times = [], []
    for image in images:
        t = time.perf_counter()
        out.append(rec.read(image, chars).text)
        times.append(time.perf_counter() - t)
    return out, times


def worker_rapidocr(rows, chars):
    from rapidocr import RapidOCR

    from device.preprocess import load_image

    engine = RapidOCR(params={"Global.use_det": False, "Global.use_cls": False, "Global.log_level": "critical",
                              "EngineConfig.onnxruntime.intra_op_num_threads": 1,
                              "EngineConfig.onnxruntime.inter_op_num_threads": 1})
    images = [load_image(p) for p, _ in rows]
    images = [im if im.ndim == 3 else __import__("cv2").cvtColor(im, __import__("cv2").COLOR_GRAY2BGR) for im in images]
    engine(images[0], use_det=False, use_cls=False, use_rec=True)
    out, times = [], []
    for image in images:
        t = time.perf_counter()
        result = engine(image[:, :, :3], use_det=False, use_cls=False, use_rec=True)
        times.append(time.perf_counter() - t)
        txts = getattr(result, "txts", None) or ("",)
        out.append(_keep(txts[0] or "", chars))
    return out, times


def worker_tesseract(rows, chars):
    """One tesseract process over a list file (process start paid once), --psm 7, whitelist = chars."""
    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "list.txt"
        listing.write_text("\n".join(p for p, _ in rows) + "\n")
        cmd = ["tesseract", str(listing), "stdout", "--psm", "7", "-l", "eng"]
        if chars:
            cmd += ["-c", f"tessedit_char_whitelist={chars}"]
        env = dict(os.environ, OMP_THREAD_LIMIT="1")
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        total = time.perf_counter() - t
    pages = proc.stdout.split("\f")[: len(rows)]
    pages += [""] * (len(rows) - len(pages))
    return [_keep(p, chars) for p in pages], [total / max(1, len(rows))] * len(rows)


WORKERS = {"edgeocr": worker_edgeocr, "rapidocr": worker_rapidocr, "tesseract": worker_tesseract}


def run_worker(args: argparse.Namespace) -> None:
    rows = json.loads(Path(args.rows).read_text())
    chars = args.chars or None
    preds, times = WORKERS[args.worker](rows, chars)
    print(json.dumps({"preds": preds, "times": times}))


def run_engine(engine: str, rows, chars) -> dict:
    """Run one engine in a child process; return predictions, per-crop times and the child's peak RSS."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(rows, fh)
    cmd = [sys.executable, __file__, "--worker", engine, "--rows", fh.name, "--chars", chars or ""]
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True,
                                env=dict(os.environ, OMP_NUM_THREADS="1", OMP_THREAD_LIMIT="1"))
        stdout = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)  # reap it ourselves to get this child's own peak RSS
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read()
    os.unlink(fh.name)
    if proc.returncode != 0:
        raise RuntimeError(f"{engine} failed: {stderr.strip()[-500:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["rss_mb"] = round(usage.ru_maxrss / 1024, 1)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real-root", default=str(HERE.parent.parent / "shared" / "data" / "real"))
    parser.add_argument("--held-back", action="store_true", help="only the held-back part of each folder")
    parser.add_argument("--engines", default="edgeocr,rapidocr,tesseract")
    parser.add_argument("--folders", default="meter-lcd-lines,lcd-digits,rolling-digits,cute80")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--rows", help=argparse.SUPPRESS)
    parser.add_argument("--chars", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(args)
        return 0
    from convert.data import REAL_SETS
    from convert.evaluate import score

    root = Path(args.real_root)
    if not root.is_dir():
        print(f"bench/peers.py: {root}: real data not found (give --real-root)", file=sys.stderr)
        return 2
    engines = [e for e in args.engines.split(",") if e != "tesseract" or shutil.which("tesseract")]
    print(f"{'set':16} {'engine':10} {'n':>5} {'exact':>7} {'CER':>7} {'ms/crop':>8} {'x edgeocr':>9} {'RSS MB':>7}")
    for name in args.folders.split(","):
        folder, chars, icase = REAL_SETS[name]
        rows = _rows(root, folder, args.held_back)
        labels = [t for _, t in rows]
        base = None
        for engine in engines:
            try:
                result = run_engine(engine, rows, chars)
            except (RuntimeError, json.JSONDecodeError) as exc:
                print(f"{name:16} {engine:10} error: {exc}")
                continue
            s = score(result["preds"], labels, ignore_case=icase)
            ms = 1000 * statistics.median(result["times"])
            base = base or (ms if engine == "edgeocr" else None)
            ratio = f"{ms / base:.1f}x" if base else "-"
            print(f"{name:16} {engine:10} {s.n:5d} {100 * s.exact:6.1f}% {100 * s.cer:6.1f}% {ms:8.2f} {ratio:>9} "
                  f"{result['rss_mb']:7.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
