#!/usr/bin/env bash
# Does `pip install 'edgeocr[device]'` on a Raspberry Pi 4/5 (64-bit Raspberry Pi OS Bookworm: aarch64,
# glibc 2.36, Python 3.11) resolve to binary wheels only? Asks pip to resolve the extra WITH its transitive
# dependencies for that target (nothing is installed, nothing is compiled), prints which wheel each package
# resolves to, and fails when anything would need building from source. Needs the package index.
#
#   scripts/check_aarch64.sh                      # extra 'device', Python 3.11, glibc 2.36
#   scripts/check_aarch64.sh --extra tflite --python-version 3.11 --glibc 2.36
#   scripts/check_aarch64.sh --numpy 1.24.2       # with apt's python3-numpy kept (what install.sh does on a
#                                                 # Pi with python3-picamera2: Bookworm ships numpy 1.24.2)
#   scripts/check_aarch64.sh --report out.json    # keep pip's JSON resolution report
set -euo pipefail
cd "$(dirname "$0")/.."

EXTRA=device
PYVER=3.11
GLIBC=2.36          # Debian 12 Bookworm (Raspberry Pi OS); wheels tagged manylinux_2_17 .. _2_36 install there
ARCH=aarch64
REPORT=""
NUMPY=""
PIP=${PIP:-}
usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --extra) EXTRA=${2:?--extra needs a name}; shift 2 ;;
    --python-version) PYVER=${2:?--python-version needs X.Y}; shift 2 ;;
    --glibc) GLIBC=${2:?--glibc needs 2.NN}; shift 2 ;;
    --arch) ARCH=${2:?--arch needs a machine name}; shift 2 ;;
    --numpy) NUMPY=${2:?--numpy needs a version}; shift 2 ;;
    --report) REPORT=${2:?--report needs a file}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "check_aarch64.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$PYVER" in 3.[0-9]|3.[0-9][0-9]) ;; *) echo "check_aarch64.sh: --python-version $PYVER: expected 3.X" >&2; exit 2 ;; esac
case "$GLIBC" in 2.[0-9][0-9]) ;; *) echo "check_aarch64.sh: --glibc $GLIBC: expected 2.NN" >&2; exit 2 ;; esac

# A Python with pip >= 22.2 (for --dry-run --report): the one given, the repo's venv, or python3.
if [ -z "$PIP" ]; then
  for py in .venv/bin/python "${PYTHON:-python3}"; do
    if command -v "$py" >/dev/null 2>&1 && "$py" -m pip --version >/dev/null 2>&1; then PIP="$py -m pip"; break; fi
  done
fi
[ -n "$PIP" ] || { echo "check_aarch64.sh: no python with pip found (set PYTHON=/path/to/python3)" >&2; exit 1; }
PY=${PIP% -m pip}

# The extra's requirements, read from setup.py itself (setup() is captured, not run).
REQS=$("$PY" - "$EXTRA" <<'EOF'
import runpy, sys
import setuptools
captured = {}
setuptools.setup = lambda **kw: captured.update(kw)
runpy.run_path("setup.py", run_name="__main__")
extras = captured.get("extras_require", {})
if sys.argv[1] not in extras:
    sys.exit(f"check_aarch64.sh: setup.py has no extra {sys.argv[1]!r} (expected one of {', '.join(sorted(extras))})")
print("\n".join(extras[sys.argv[1]]))
EOF
)

# Every manylinux tag a glibc-$GLIBC system accepts (pip does not widen a --platform by itself).
PLATFORMS=(--platform "manylinux2014_$ARCH")
minor=${GLIBC#2.}
for m in $(seq 17 "$minor"); do PLATFORMS+=(--platform "manylinux_2_${m}_$ARCH"); done
ABI="cp${PYVER/./}"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
printf '%s\n' "$REQS" > "$WORK/requirements.txt"
CONSTRAINT=()
if [ -n "$NUMPY" ]; then
  echo "numpy==$NUMPY" > "$WORK/constraints.txt"
  CONSTRAINT=(--constraint "$WORK/constraints.txt")
fi
echo "resolving edgeocr[$EXTRA] for CPython $PYVER on manylinux (glibc <= $GLIBC) $ARCH, binary wheels only${NUMPY:+, numpy==$NUMPY}:"
sed 's/^/  /' "$WORK/requirements.txt"

# --only-binary=:all: makes pip refuse any sdist: a package that would need compiling fails the resolution.
if ! $PIP install --dry-run --ignore-installed --quiet --disable-pip-version-check \
      --only-binary=:all: --implementation cp --python-version "$PYVER" --abi "$ABI" --abi abi3 --abi none \
      "${PLATFORMS[@]}" ${CONSTRAINT[@]+"${CONSTRAINT[@]}"} --target "$WORK/target" --report "$WORK/report.json" \
      -r "$WORK/requirements.txt" > "$WORK/pip.log" 2>&1; then
  cat "$WORK/pip.log" >&2
  echo "check_aarch64.sh: FAIL: edgeocr[$EXTRA] does not resolve to binary wheels for $ARCH / CPython $PYVER" \
       "(a package above would need compiling on the Pi, or has no release for this target)" >&2
  exit 1
fi
[ -z "$REPORT" ] || cp "$WORK/report.json" "$REPORT"

"$PY" - "$WORK/report.json" <<'EOF'
import json, sys
from urllib.parse import unquote, urlparse
report = json.load(open(sys.argv[1]))
rows, bad = [], []
for item in report["install"]:
    meta = item["metadata"]
    url = item["download_info"]["url"]
    wheel = unquote(urlparse(url).path.rsplit("/", 1)[-1])
    rows.append((meta["name"], meta["version"], wheel))
    if not wheel.endswith(".whl"):
        bad.append(wheel)
width = max(len(r[0]) for r in rows)
vwidth = max(len(r[1]) for r in rows)
print(f"\n{'package':<{width}}  {'version':<{vwidth}}  wheel")
for name, version, wheel in sorted(rows, key=lambda r: r[0].lower()):
    print(f"{name:<{width}}  {version:<{vwidth}}  {wheel}")
if bad:
    sys.exit(f"check_aarch64.sh: FAIL: not a wheel (would be built on the Pi): {', '.join(bad)}")
print(f"\nOK: {len(rows)} packages, all binary wheels")
EOF
