#!/usr/bin/env bash
# Install edgeocr as a systemd service on Raspberry Pi OS Bookworm (or any Debian-like aarch64 / armhf /
# x86_64 system). Idempotent: a second run changes nothing unless the package, unit or shipped files changed.
#
#   sudo systemd/install.sh                   # apt packages, user, /opt/edgeocr venv, /etc/edgeocr, unit, start
#   sudo systemd/install.sh --wheel edgeocr-0.1.0-py3-none-any.whl
#   sudo systemd/install.sh --uninstall       # remove the service and /opt/edgeocr; keep config and state
#   sudo systemd/install.sh --uninstall --purge   # ... and /etc/edgeocr, /var/lib/edgeocr, the user
#   systemd/install.sh --root /tmp/stage      # stage into a folder: no apt, useradd, chown or systemctl
#
# Options:
#   --root DIR        install under DIR (also: DESTDIR=DIR); the venv is created in place, so it only runs
#                     from DIR (tests, inspection), it is not a relocatable package
#   --python PATH     interpreter for the venv (default /usr/bin/python3; Python 3.10 or newer)
#   --wheel FILE      install this wheel instead of the checkout this script lives in
#   --extra NAME      pip extra: device (default; tflite on 32-bit ARM, where ai-edge-litert has no wheels)
#   --pip-args ARGS   extra pip arguments, e.g. "--no-deps --no-build-isolation --no-index" (offline tests)
#   --template NAME   config written to /etc/edgeocr/config.toml when there is none: a file, or the name of
#                     one in firmware_config/ (default replay-demo: runs anywhere; then edit it, see PI.md)
#   --no-numpy-pin    let pip upgrade numpy past the system's (default: keep apt's numpy when python3-numpy
#                     is installed, so python3-picamera2's compiled modules keep working)
#   --no-apt          do not install Debian packages
#   --no-start        enable the service but do not start it; --no-enable: neither enable nor start
#   --force           reinstall the package even when it is up to date
#   --uninstall [--purge]
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
ROOT=${DESTDIR:-}
PY=""; WHEEL=""; EXTRA=""; PIP_ARGS=""; TEMPLATE=replay-demo
APT=1; ENABLE=1; START=1; FORCE=0; NUMPY_PIN=1; MODE=install; PURGE=0
SERVICE_USER=edgeocr
MIN_PY=3.10

die() { echo "install.sh: error: $*" >&2; exit 1; }
say() { echo "install.sh: $*"; }
usage() { sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT=${2:?--root needs a folder}; shift 2 ;;
    --root=*) ROOT=${1#*=}; shift ;;
    --python) PY=${2:?--python needs a path}; shift 2 ;;
    --wheel) WHEEL=${2:?--wheel needs a file}; shift 2 ;;
    --extra) EXTRA=${2:?--extra needs a name}; shift 2 ;;
    --pip-args) PIP_ARGS=${2?--pip-args needs a value}; shift 2 ;;
    --template) TEMPLATE=${2:?--template needs a name or file}; shift 2 ;;
    --no-numpy-pin) NUMPY_PIN=0; shift ;;
    --no-apt) APT=0; shift ;;
    --no-start) START=0; shift ;;
    --no-enable) ENABLE=0; START=0; shift ;;
    --force) FORCE=1; shift ;;
    --uninstall) MODE=uninstall; shift ;;
    --purge) PURGE=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done
[ "$PURGE" = 0 ] || [ "$MODE" = uninstall ] || die "--purge goes with --uninstall"

# --- where things go (the unit expects exactly these paths) ---
STAGING=0
if [ -n "$ROOT" ]; then
  mkdir -p "$ROOT" || die "--root $ROOT: cannot create the folder"
  ROOT=$(cd "$ROOT" && pwd)
  [ "$ROOT" != / ] || ROOT=""
fi
[ -z "$ROOT" ] || STAGING=1
OPT="$ROOT/opt/edgeocr"                   # the venv; ExecStart=/opt/edgeocr/bin/edgeocr
SHARE="$OPT/share/edgeocr"                # config templates, demo frames, docs
ETC="$ROOT/etc/edgeocr"                   # config.toml, mqtt-password (LoadCredential=)
STATE="$ROOT/var/lib/edgeocr"             # StateDirectory=edgeocr
UNIT="$ROOT/etc/systemd/system/edgeocr.service"
STAMP="$OPT/.edgeocr-install"

# Root-only actions: run them for real, or (staging) say what would be run.
as_root() {
  if [ "$STAGING" = 1 ]; then say "skipped (--root): $*"; else "$@"; fi
}
systemd_running() { [ "$STAGING" = 0 ] && [ -d /run/systemd/system ]; }
systemctl_do() {
  if [ "$STAGING" = 1 ]; then say "skipped (--root): systemctl $*"
  elif systemd_running; then systemctl "$@"
  else say "systemd is not running here: skipped systemctl $*"; fi
}

if [ "$(id -u)" != 0 ] && [ "$STAGING" = 0 ]; then
  die "must run as root (sudo $0 ...), or stage into a folder with --root DIR"
fi

# ------------------------------------------------------------------------------------------------ uninstall
if [ "$MODE" = uninstall ]; then
  if [ -f "$UNIT" ]; then
    systemctl_do disable --now edgeocr.service
    rm -f "$UNIT"
    say "removed $UNIT"
    systemctl_do daemon-reload
  fi
  if [ -d "$OPT" ]; then rm -rf "$OPT"; say "removed $OPT"; fi
  if [ "$PURGE" = 1 ]; then
    rm -rf "$ETC" "$STATE"
    say "purged $ETC and $STATE"
    if [ "$STAGING" = 0 ] && getent passwd "$SERVICE_USER" >/dev/null; then
      userdel "$SERVICE_USER" && say "removed user $SERVICE_USER"
    fi
  else
    [ ! -e "$ETC" ] || say "kept $ETC (your config and the MQTT password; --uninstall --purge removes it)"
    [ ! -e "$STATE" ] || say "kept $STATE (outbox and last values; --uninstall --purge removes it)"
  fi
  say "uninstalled"
  exit 0
fi

# ------------------------------------------------------------------------------------------------ checks
# Everything that can be wrong is checked before anything is written.
if [ -z "$PY" ]; then
  if [ -x /usr/bin/python3 ]; then PY=/usr/bin/python3; else PY=$(command -v python3 || true); fi
fi
[ -n "$PY" ] && [ -x "$PY" ] || die "no Python 3 found (${PY:-python3}): sudo apt install python3 python3-venv, or --python PATH"
PYVER=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) \
  || die "$PY does not run as Python 3 (--python PATH)"
py_ok=$("$PY" -c "import sys; print(int(sys.version_info[:2] >= tuple(map(int, '$MIN_PY'.split('.')))))" 2>/dev/null || echo 0)
[ "$py_ok" = 1 ] || die "$PY is Python $PYVER; edgeocr needs Python $MIN_PY or newer (ai-edge-litert has no" \
  "wheels for older ones): use Raspberry Pi OS Bookworm (Python 3.11) or --python PATH"

MACHINE=$(uname -m)
if [ -z "$EXTRA" ]; then
  case "$MACHINE" in
    armv6l|armv7l) EXTRA=tflite; say "32-bit ARM ($MACHINE): ai-edge-litert has no wheels; using the tflite-runtime extra" ;;
    *) EXTRA=device ;;
  esac
fi
case "$EXTRA" in device|tflite|pi) ;; *) die "--extra $EXTRA: expected device, tflite or pi" ;; esac

if [ -n "$WHEEL" ]; then
  [ -f "$WHEEL" ] && [ "${WHEEL%.whl}" != "$WHEEL" ] || die "--wheel $WHEEL: expected an existing .whl file"
  WHEEL=$(cd "$(dirname "$WHEEL")" && pwd)/$(basename "$WHEEL")
else
  [ -f "$SRC/setup.py" ] || die "$SRC/setup.py not found: run this script from an edgeocr checkout, or pass --wheel"
fi
[ -f "$SRC/systemd/edgeocr.service" ] || die "$SRC/systemd/edgeocr.service not found (incomplete checkout)"
if [ -f "$TEMPLATE" ]; then TEMPLATE_FILE=$TEMPLATE
elif [ -f "$SRC/firmware_config/$TEMPLATE.toml" ]; then TEMPLATE_FILE=$SRC/firmware_config/$TEMPLATE.toml
else die "--template $TEMPLATE: expected a file or one of: $(cd "$SRC/firmware_config" && ls ./*.toml | sed 's#^\./##; s#\.toml$##' | tr '\n' ' ')"
fi
[ -e "$ETC/config.toml" ] && [ ! -f "$ETC/config.toml" ] && die "$ETC/config.toml exists but is not a file"

CHANGED=0   # anything that a running service should be restarted for

# ------------------------------------------------------------------------------------------------ apt
apt_missing() { for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || printf '%s ' "$p"; done; }
if [ "$APT" = 1 ] && command -v apt-get >/dev/null 2>&1; then
  want="python3 python3-venv python3-pip ca-certificates"
  # Raspberry Pi OS: the camera stack comes from apt (libcamera is not on PyPI); the venv sees it through
  # --system-site-packages.
  if apt-cache policy python3-picamera2 2>/dev/null | grep -q 'Candidate: [0-9]'; then want="$want python3-picamera2"; fi
  missing=$(apt_missing $want)
  if [ -n "$missing" ]; then
    if [ "$STAGING" = 1 ]; then say "skipped (--root): apt-get install -y --no-install-recommends $missing"
    else
      say "installing Debian packages: $missing"
      DEBIAN_FRONTEND=noninteractive apt-get update -qq
      # shellcheck disable=SC2086  # a list of package names
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
    fi
  fi
fi
"$PY" -c 'import venv, ensurepip' 2>/dev/null \
  || die "$PY cannot create virtual environments: sudo apt install python3-venv"

# ------------------------------------------------------------------------------------------------ user
if [ "$STAGING" = 1 ]; then
  say "skipped (--root): useradd --system $SERVICE_USER; usermod -aG video $SERVICE_USER"
else
  getent group video >/dev/null || groupadd --system video
  if ! getent passwd "$SERVICE_USER" >/dev/null; then
    useradd --system --user-group --home-dir /var/lib/edgeocr --no-create-home \
            --shell /usr/sbin/nologin --comment "edgeocr daemon" "$SERVICE_USER"
    say "created system user $SERVICE_USER"
  fi
  id -nG "$SERVICE_USER" | tr ' ' '\n' | grep -qx video || { usermod -aG video "$SERVICE_USER"; say "added $SERVICE_USER to group video"; }
fi

# ------------------------------------------------------------------------------------------------ venv + package
if [ -x "$OPT/bin/python" ]; then
  venv_ver=$("$OPT/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || echo broken)
  if [ "$venv_ver" != "$PYVER" ]; then
    say "$OPT was made with Python $venv_ver, now $PYVER: recreating it"
    rm -rf "$OPT"
  fi
fi
if [ ! -x "$OPT/bin/python" ]; then
  mkdir -p "$(dirname "$OPT")"
  "$PY" -m venv --system-site-packages "$OPT"
  say "created venv $OPT (Python $PYVER, with system site packages for python3-picamera2)"
  CHANGED=1
fi

# What would be installed, as one fingerprint: the wheel's contents (built from the checkout unless --wheel)
# and the options. The checkout is built from a copy: pip would otherwise leave build/ and *.egg-info in it.
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
if [ -z "$WHEEL" ]; then
  mkdir "$WORK/src" "$WORK/dist"
  (cd "$SRC" && tar --exclude=.git --exclude='.venv*' --exclude='venv*' --exclude=__pycache__ --exclude='*.pyc' \
      --exclude='*.egg-info' --exclude=build --exclude=dist --exclude=runs --exclude=cache --exclude=state \
      --exclude='.*cache' --exclude='*.onnx' --exclude='*.npz' --exclude='*.npy' -cf - .) | tar -xf - -C "$WORK/src"
  # shellcheck disable=SC2086  # PIP_ARGS is a list of options
  "$OPT/bin/python" -m pip wheel -q --disable-pip-version-check --no-deps $PIP_ARGS -w "$WORK/dist" "$WORK/src" \
    || die "could not build the edgeocr wheel from $SRC (see above)"
  WHEEL=$(ls "$WORK"/dist/edgeocr-*.whl)
fi
spec="$WHEEL[$EXTRA]"
# Member names and contents, not the zip's timestamps: the same source gives the same fingerprint.
fingerprint=$("$OPT/bin/python" - "$WHEEL" <<'PYEOF'
import hashlib, sys, zipfile
h = hashlib.sha256()
with zipfile.ZipFile(sys.argv[1]) as z:
    for name in sorted(z.namelist()):
        if not name.endswith(".dist-info/RECORD"):
            h.update(name.encode() + b"\0" + hashlib.sha256(z.read(name)).digest())
print(h.hexdigest())
PYEOF
)
numpy_pin=""
if [ "$NUMPY_PIN" = 1 ]; then
  # The system interpreter's own numpy (python3-numpy), not one from PYTHONPATH or ~/.local.
  numpy_pin=$("$PY" -E -s -c 'import numpy; print(numpy.__version__)' 2>/dev/null || true)
fi
fingerprint="$fingerprint extra=$EXTRA numpy=${numpy_pin:-free} pip-args=$PIP_ARGS"
if [ "$FORCE" = 0 ] && [ -x "$OPT/bin/edgeocr" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$fingerprint" ]; then
  say "edgeocr in $OPT is up to date"
else
  constraint=()
  if [ -n "$numpy_pin" ]; then
    # apt's numpy (python3-picamera2 depends on it) must stay: a pip numpy 2 shadowing it breaks picamera2's
    # compiled dependencies (simplejpeg, ...). The device stack resolves with it (scripts/check_aarch64.sh --numpy).
    echo "numpy==$numpy_pin" > "$WORK/constraints.txt"
    constraint=(--constraint "$WORK/constraints.txt")
    say "keeping the system's numpy $numpy_pin (--no-numpy-pin to let pip choose)"
  fi
  "$OPT/bin/python" -m pip uninstall -q -y edgeocr >/dev/null 2>&1 || true
  say "installing edgeocr[$EXTRA] into $OPT"
  # shellcheck disable=SC2086  # PIP_ARGS is a list of options
  "$OPT/bin/python" -m pip install -q --disable-pip-version-check ${constraint[@]+"${constraint[@]}"} $PIP_ARGS "$spec" \
    || die "pip could not install edgeocr[$EXTRA] into $OPT (see above)"
  echo "$fingerprint" > "$STAMP"
  CHANGED=1
fi
[ -x "$OPT/bin/edgeocr" ] || die "$OPT/bin/edgeocr missing after the install"

# ------------------------------------------------------------------------------------------------ files
# put SRC DEST MODE: copy when the content differs (keeps a second run from touching anything).
PUT=0
put() {
  if ! cmp -s "$1" "$2"; then
    install -D -m "$3" "$1" "$2"
    [ "${4:-}" = quiet ] || say "installed $2"
    PUT=$((PUT + 1))
    CHANGED=1
  fi
}
while IFS= read -r f; do
  put "$SRC/firmware_config/$f" "$SHARE/$f" 0644 quiet
done < <(cd "$SRC/firmware_config" && find . -type f ! -path '*/__pycache__/*' ! -name '*.pyc' | sed 's#^\./##' | LC_ALL=C sort)
[ ! -f "$SRC/docs/PI.md" ] || put "$SRC/docs/PI.md" "$SHARE/PI.md" 0644 quiet
[ "$PUT" = 0 ] || say "installed $PUT file(s) in $SHARE (config templates, demo frames, boot config, PI.md)"

# /etc/edgeocr: root-owned, readable by the service's group only.
install -d -m 0750 "$ETC"
as_root chown root:"$SERVICE_USER" "$ETC"
if [ -f "$ETC/config.toml" ]; then
  # Never overwritten: say whether it was edited, and where the current template is.
  rendered="$(mktemp)"
  sed 's#^\(path\|reference\) = "samples/#\1 = "../../opt/edgeocr/share/edgeocr/samples/#' "$TEMPLATE_FILE" > "$rendered"
  if cmp -s "$rendered" "$ETC/config.toml"; then
    say "$ETC/config.toml is the unchanged template; kept"
  else
    say "keeping your edited $ETC/config.toml (not overwritten; templates are in $SHARE)"
  fi
  rm -f "$rendered"
else
  # Relative paths in a config resolve against its folder: point the demo at the frames shipped in $SHARE
  # with a path relative to /etc/edgeocr, so the same file works under --root.
  sed 's#^\(path\|reference\) = "samples/#\1 = "../../opt/edgeocr/share/edgeocr/samples/#' "$TEMPLATE_FILE" \
    | install -m 0640 /dev/stdin "$ETC/config.toml"
  as_root chown root:"$SERVICE_USER" "$ETC/config.toml"
  say "wrote $ETC/config.toml from $(basename "$TEMPLATE_FILE") (edit it, then: systemctl restart edgeocr)"
  CHANGED=1
fi
if [ ! -e "$ETC/mqtt-password" ]; then
  # LoadCredential=mqtt-password:/etc/edgeocr/mqtt-password needs the file; empty = no password.
  install -m 0600 /dev/null "$ETC/mqtt-password"
  say "created an empty $ETC/mqtt-password (put the broker password in it; see PI.md)"
fi
if [ ! -d "$STATE" ]; then
  install -d -m 0750 "$STATE"
  as_root chown "$SERVICE_USER:$SERVICE_USER" "$STATE"
fi

put "$SRC/systemd/edgeocr.service" "$UNIT" 0644

# ------------------------------------------------------------------------------------------------ check + start
# The installed program checks the installed config, as ExecStartPre= will (the credential file name is
# the credential's name, so a config using mqtt.password_credential = "mqtt-password" checks too).
if ! CREDENTIALS_DIRECTORY="$ETC" "$OPT/bin/edgeocr" check-config "$ETC/config.toml"; then
  systemctl_do daemon-reload
  [ "$ENABLE" = 0 ] || systemctl_do enable edgeocr.service
  die "$ETC/config.toml is invalid (errors above): fix it, then: sudo systemctl restart edgeocr"
fi
systemctl_do daemon-reload
if [ "$ENABLE" = 1 ] && [ "$START" = 1 ]; then
  systemctl_do enable --now edgeocr.service
  # A service that was already running picks up a new package, unit or config template.
  [ "$CHANGED" = 0 ] || systemctl_do try-restart edgeocr.service
elif [ "$ENABLE" = 1 ]; then
  systemctl_do enable edgeocr.service
fi
if [ "$CHANGED" = 0 ]; then say "nothing to change"; fi
say "done: config $ETC/config.toml, state $STATE, logs: journalctl -u edgeocr -f"
