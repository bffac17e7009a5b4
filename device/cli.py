"""``edgeocr`` command line: ``read`` (recognise image files), ``run`` (the daemon), ``check-config``, ``preview``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from device.errors import EdgeOCRError, RegionError

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_CONFIG = 78  # EX_CONFIG: systemd's RestartPreventExitStatus=78 stops a restart loop


def _iter_images(paths: Sequence[str]) -> Iterator[Path]:
    """Expand folders to their image files (sorted); keep files (even bad ones) for a per-file error."""
    from device.preprocess import IMAGE_SUFFIXES

    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            yield path


def _parse_region(args: argparse.Namespace):
    from device.regions import parse_box, parse_quad

    if args.box and args.quad:
        raise RegionError("--box and --quad: expected at most one region")
    if args.box:
        return parse_box(args.box)
    if args.quad:
        return parse_quad(args.quad)
    return None


def _check_chars(chars: str | None, charset: str) -> None:
    if chars is None:
        return
    if chars == "":
        raise EdgeOCRError("--chars '': expected at least one character (omit --chars to allow all)")
    unknown = sorted(set(chars) - set(charset))
    if unknown:
        raise EdgeOCRError(f"--chars {chars!r}: {''.join(unknown)!r} not in the model's charset {charset!r}")


def cmd_read(args: argparse.Namespace) -> int:
    """Recognise each image (whole image or one region); one line (or JSON object) per image."""
    from device.preprocess import load_image
    from device.recognize import Recognizer
    from device.regions import crop

    try:
        region = _parse_region(args)
        recognizer = Recognizer(args.model, num_threads=args.threads)
        _check_chars(args.chars, recognizer.card.charset)
    except EdgeOCRError as exc:
        print(f"edgeocr: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    status = EXIT_OK
    for path in _iter_images(args.images):
        try:
            result = recognizer.read(crop(load_image(path), region, name=str(path)), args.chars)
        except EdgeOCRError as exc:
            message = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
            print(f"edgeocr: error: {message}", file=sys.stderr)
            if args.json:
                print(json.dumps({"image": str(path), "error": message}), flush=True)
            status = EXIT_SOME_FAILED
            continue
        if args.json:
            record = {
                "image": str(path),
                "text": result.text,
                "confidence": round(result.confidence, 4),
                "char_confidences": list(result.char_confidences),
            }
            print(json.dumps(record, ensure_ascii=False), flush=True)
        else:
            print(f"{path}\t{result.text}\t{result.confidence:.3f}", flush=True)
    return status


def _config_path(args: argparse.Namespace) -> Path:
    from device.config import default_demo_config

    return Path(args.config) if args.config else default_demo_config()


def _load(path: Path):
    """The config, or None after printing each error."""
    from device.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        for message in exc.messages:
            print(f"edgeocr: config error: {message}", file=sys.stderr)
        return None


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate a config: ``OK`` and a summary (exit 0), or every error (exit 78)."""
    cfg = _load(Path(args.file))
    if cfg is None:
        return EXIT_CONFIG
    cam = cfg.camera
    source = {"folder": cam.path, "opencv": cam.url or f"device {cam.device}", "picamera2": "camera"}[cam.source]
    mqtt = f"{cfg.mqtt.host}:{cfg.mqtt.port}{' TLS' if cfg.mqtt.tls else ''}" if cfg.mqtt.enabled else "disabled"
    print(f"OK {args.file}")
    print(f"  device   {cfg.device_id}")
    print(f"  camera   {cam.source} {source} {cam.width}x{cam.height} every {cam.interval_s:g} s")
    print(f"  align    {len(cfg.align.markers)} marker(s)" if cfg.align.enabled else "  align    off")
    print(f"  model    {cfg.recognizer.model or 'shipped'} ({cfg.recognizer.threads} thread(s))")
    for r in cfg.regions:
        geometry = "box" if r.box is not None else "quad"
        extra = f" fields {len(r.fields)}" if r.fields else ""
        print(f"  region   {r.name}: {r.kind} {geometry} vote {r.tracker.vote_k}/{r.tracker.vote_n}{extra}")
    print(f"  mqtt     {mqtt}")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    """The daemon (the bundled replay demo without ``--config``)."""
    from dataclasses import replace

    from device.daemon import Daemon
    from device.errors import EdgeOCRError

    path = _config_path(args)
    cfg = _load(path)
    if cfg is None:
        return EXIT_CONFIG
    max_frames = args.max_frames
    if args.once:  # one frame, each read accepted on its own
        regions = tuple(replace(r, tracker=replace(r.tracker, vote_k=1, vote_n=1)) for r in cfg.regions)
        cfg, max_frames = replace(cfg, regions=regions), 1
    try:
        daemon = Daemon(cfg, path)
    except EdgeOCRError as exc:
        print(f"edgeocr: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    daemon.install_signals()
    return daemon.run(max_frames=max_frames)


def cmd_preview(args: argparse.Namespace) -> int:
    """One annotated frame for aiming the camera."""
    from device.errors import EdgeOCRError
    from device.preview import preview

    cfg = _load(_config_path(args))
    if cfg is None:
        return EXIT_CONFIG
    try:
        preview(cfg, args.out, args.image)
    except EdgeOCRError as exc:
        print(f"edgeocr: error: {exc}", file=sys.stderr)
        return EXIT_SOME_FAILED
    print(args.out)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The ``edgeocr`` argument parser (subcommands register themselves here)."""
    parser = argparse.ArgumentParser(prog="edgeocr", description="Offline text reading for meters and labels.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    read = sub.add_parser("read", help="recognise text in image files (whole image or one region)")
    read.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders of images")
    read.add_argument("--model", help="a .tflite model with its .json card beside it (default: the shipped model)")
    read.add_argument("--chars", help="allowed characters, e.g. '0123456789.' for meters")
    read.add_argument("--box", metavar="X,Y,W,H", help="read only this rectangle")
    read.add_argument("--quad", metavar="X1,Y1,...,X4,Y4", help="read only this quad (TL,TR,BR,BL; perspective)")
    read.add_argument("--threads", type=int, default=1, help="interpreter threads (default 1)")
    read.add_argument("--json", action="store_true", help="print one JSON object per image per line")
    read.set_defaults(func=cmd_read)

    run = sub.add_parser("run", help="the daemon: read the configured regions, print and publish readings")
    run.add_argument("--config", metavar="FILE", help="daemon config (default: the bundled replay demo)")
    bounds = run.add_mutually_exclusive_group()
    bounds.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames (tests, benchmarks)")
    bounds.add_argument("--once", action="store_true", help="read one frame, accept each read at once, exit")
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check-config", help="validate a daemon config (exit 0, or 78 with the errors)")
    check.add_argument("file", metavar="FILE")
    check.set_defaults(func=cmd_check_config)

    prev = sub.add_parser("preview", help="draw regions, markers and readings on one frame")
    prev.add_argument("--config", metavar="FILE", help="daemon config (default: the bundled replay demo)")
    prev.add_argument("--out", default="preview.png", metavar="PNG", help="output image (default preview.png)")
    prev.add_argument("--image", metavar="FRAME", help="use this image instead of grabbing from the camera")
    prev.set_defaults(func=cmd_preview)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``edgeocr`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
