#!/usr/bin/env bash
# Set up edgeocr from nothing: Debian packages (when root), the device venv (.venv) and, with
# --convert, the workstation venv (.venv-convert). Idempotent; --fresh recreates the venvs.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
FRESH=0; CONVERT=0
for arg in "$@"; do
  case "$arg" in
    --fresh) FRESH=1 ;;
    --convert) CONVERT=1 ;;
    *) echo "setup.sh: unknown option $arg (expected --fresh, --convert)" >&2; exit 2 ;;
  esac
done

APT_PACKAGES="mosquitto openssl fonts-dseg fonts-dejavu-core fonts-liberation fonts-freefont-ttf fonts-b612 \
fonts-3270 fonts-terminus fonts-dotgothic16 fonts-noto-mono fonts-roboto fonts-open-sans fonts-inconsolata \
fonts-croscore fonts-crosextra-carlito fonts-crosextra-caladea fonts-lato fonts-hack fonts-firacode \
fonts-jetbrains-mono fonts-oxygen fonts-ocr-a fonts-urw-base35 systemd python3-venv python3-wheel \
python3-setuptools"
missing=""
for p in $APT_PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
  else
    echo "setup.sh: missing Debian packages:$missing (run as root or: sudo apt-get install$missing)" >&2
  fi
fi

make_venv() {  # $1 = folder
  if [ "$FRESH" = 1 ]; then rm -rf "$1"; fi
  [ -x "$1/bin/python" ] || "$PY" -m venv "$1"
  "$1/bin/pip" install -q --upgrade pip
}

make_venv .venv
.venv/bin/pip install -q -e '.[device,test]'

if [ "$CONVERT" = 1 ]; then
  make_venv .venv-convert
  # torch first, pinned: 2.13.0 resolves to the local CPU wheel; an unpinned torch pulls GBs of CUDA.
  .venv-convert/bin/pip install -q torch==2.13.0
  .venv-convert/bin/pip install -q -e '.[convert,test]'
fi
