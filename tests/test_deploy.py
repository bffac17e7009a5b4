"""Deployment: the systemd unit (verify, security exposure), install.sh into a scratch root, the boot config.

Everything runs for real: systemd-analyze on the unit, install.sh creating a venv and installing the package
from this checkout into a scratch root, the installed ``edgeocr`` checking and running the installed config.
To stay fast and offline the install uses the system Python's setuptools/wheel (``--no-build-isolation
--no-index --no-deps``) and takes the dependency stack (numpy, OpenCV, LiteRT, paho) from the interpreter
running the tests through PYTHONPATH; the package itself comes from the scratch install (checked).
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "systemd" / "edgeocr.service"
INSTALL = REPO / "systemd" / "install.sh"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
SYSTEM_PY = Path("/usr/bin/python3")
PIP_ARGS = "--no-deps --no-build-isolation --no-index"
EXPOSURE_GOAL = 2.0
CAMERA_DEVICE_GROUPS = {"char-video4linux rw", "char-media rw", "char-dma_heap rw"}


# ------------------------------------------------------------------------------------------------ the unit
def unit_settings(text: str) -> dict[str, list[str]]:
    """Key -> every value assigned in the unit (systemd keys may repeat)."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, value = line.split("=", 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def staged_unit(tmp: Path, edgeocr_bin: Path, text: str | None = None) -> Path:
    """The unit with /opt/edgeocr/bin/edgeocr pointing at a real installed binary (verify checks it exists)."""
    path = tmp / "edgeocr.service"
    path.write_text((text or UNIT.read_text()).replace("/opt/edgeocr/bin/edgeocr", str(edgeocr_bin)))
    return path


def test_unit_has_the_required_settings():
    s = unit_settings(UNIT.read_text())
    assert s["Type"] == ["notify"] and s["NotifyAccess"] == ["main"]
    assert s["Restart"] == ["on-failure"] and s["RestartPreventExitStatus"] == ["78"]
    assert int(s["WatchdogSec"][0]) >= 10
    assert s["ExecStartPre"] == ["/opt/edgeocr/bin/edgeocr check-config /etc/edgeocr/config.toml"]
    assert s["ExecStart"] == ["/opt/edgeocr/bin/edgeocr run --config /etc/edgeocr/config.toml"]
    assert s["User"] == ["edgeocr"] and s["SupplementaryGroups"] == ["video"]
    assert s["StateDirectory"] == ["edgeocr"] and s["ConfigurationDirectory"] == ["edgeocr"]
    assert s["LoadCredential"] == ["mqtt-password:/etc/edgeocr/mqtt-password"]
    for key, value in {"ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
                       "NoNewPrivileges": "yes", "DevicePolicy": "closed", "MemoryDenyWriteExecute": "yes"}.items():
        assert s[key] == [value], key
    assert s["CapabilityBoundingSet"] == [""]
    assert s["SystemCallFilter"][0] == "@system-service"
    assert set(s["RestrictAddressFamilies"][0].split()) == {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}
    assert set(s["DeviceAllow"]) == CAMERA_DEVICE_GROUPS
    assert "MemoryMax" in s


# ------------------------------------------------------------------------------------------------ install
def _deps_path() -> str:
    paths = sysconfig.get_paths()
    return os.pathsep.join(dict.fromkeys([paths["purelib"], paths["platlib"]]))


def _need_system_python() -> None:
    if not SYSTEM_PY.exists():
        pytest.skip("no /usr/bin/python3 (install.sh's default interpreter)")
    code = "import sys, venv, ensurepip, setuptools, wheel; print('%d.%d' % sys.version_info[:2])"
    probe = subprocess.run([str(SYSTEM_PY), "-c", code], check=False, capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("/usr/bin/python3 lacks venv/ensurepip/setuptools/wheel (apt install python3-venv python3-wheel)")
    if probe.stdout.strip() != "{}.{}".format(*sys.version_info[:2]):
        pytest.skip(f"/usr/bin/python3 is {probe.stdout.strip()}, the tests run {sys.version_info[:2]}: "
                    "the dependency stack cannot be shared")


def run_install(root: Path, *args: str, python: str | None = None, env_extra: dict | None = None,
                user: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DESTDIR", "CREDENTIALS_DIRECTORY")}
    env["PYTHONPATH"] = _deps_path()
    env.update(env_extra or {})
    cmd = ["bash", str(INSTALL), "--python", python or str(SYSTEM_PY), "--pip-args", PIP_ARGS, *args]
    if root is not None:
        cmd[2:2] = ["--root", str(root)]
    if user:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    return subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, timeout=240)


def manifest(root: Path) -> dict[str, tuple]:
    """Every path under root with its type, size, mode and mtime: any write shows up."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    _need_system_python()
    root = tmp_path_factory.mktemp("root")
    result = run_install(root)
    assert result.returncode == 0, result.stdout + result.stderr
    (root / "install-1.log").write_text(result.stdout + result.stderr)
    return root


def _edgeocr(root: Path) -> Path:
    return root / "opt/edgeocr/bin/edgeocr"


def _run_installed(root: Path, *args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": _deps_path(), **(env_extra or {})}
    return subprocess.run([str(_edgeocr(root)), *args], check=False, capture_output=True, text=True, env=env, timeout=120)


def test_files_land_where_the_unit_expects_them(installed: Path):
    root = installed
    unit_file = root / "etc/systemd/system/edgeocr.service"
    assert unit_file.read_text() == UNIT.read_text()
    s = unit_settings(unit_file.read_text())
    # Every path the unit names is provided by the install (under the scratch root).
    for cmd in s["ExecStartPre"] + s["ExecStart"] + s["ExecReload"][:1]:
        binary, *args = cmd.split()
        assert os.access(root / binary.lstrip("/"), os.X_OK), binary
        for arg in args:
            if arg.startswith("/"):
                assert (root / arg.lstrip("/")).is_file(), arg
    cred_src = s["LoadCredential"][0].split(":", 1)[1]
    assert (root / cred_src.lstrip("/")).is_file()
    assert (root / "var/lib" / s["StateDirectory"][0]).is_dir()
    assert (root / "etc" / s["ConfigurationDirectory"][0]).is_dir()
    # Modes: the config and the secret are not world-readable.
    assert (root / "etc/edgeocr/config.toml").stat().st_mode & 0o777 == 0o640
    assert (root / "etc/edgeocr/mqtt-password").stat().st_mode & 0o777 == 0o600
    assert (root / "etc/edgeocr").stat().st_mode & 0o777 == 0o750
    # The venv sees system site packages (python3-picamera2 on Raspberry Pi OS).
    assert "include-system-site-packages = true" in (root / "opt/edgeocr/pyvenv.cfg").read_text()
    # Root-only steps were printed, not run.
    log = (root / "install-1.log").read_text()
    assert "skipped (--root): useradd" in log and "skipped (--root): systemctl enable --now edgeocr.service" in log


def test_installed_check_config_accepts_the_installed_config(installed: Path):
    cfg = installed / "etc/edgeocr/config.toml"
    result = _run_installed(installed, "check-config", str(cfg))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(f"OK {cfg}")
    # ... and it is the installed package that answered, not the checkout.
    py = installed / "opt/edgeocr/bin/python"
    where = subprocess.run([str(py), "-c", "import device; print(device.__file__)"], check=False, capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": _deps_path()}, cwd=installed)
    assert where.stdout.strip().startswith(str(installed / "opt/edgeocr/lib")), where.stdout + where.stderr


def test_installed_daemon_runs_the_unit_command_line(installed: Path):
    """ExecStart= as systemd runs it (STATE_DIRECTORY set): readings printed, state written to the state dir."""
    state = installed / "var/lib/edgeocr"
    cfg = installed / "etc/edgeocr/config.toml"
    # The demo publishes to 127.0.0.1:1883; no broker is needed (readings wait in the outbox).
    result = _run_installed(installed, "run", "--config", str(cfg), "--max-frames", "4",
                            env_extra={"STATE_DIRECTORY": str(state)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^energy: \S+ kWh \[ok\]", result.stdout, re.MULTILINE), result.stdout
    assert (state / "last-values-demo.json").is_file()
    assert (state / "outbox-demo.sqlite").is_file()


def test_second_run_changes_nothing(installed: Path):
    before = manifest(installed)
    result = run_install(installed)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is up to date" in result.stdout and "nothing to change" in result.stdout
    after = manifest(installed)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert changed == [], changed


def test_edited_config_is_kept(installed: Path, tmp_path: Path):
    root = tmp_path / "root"
    shutil.copytree(installed, root, symlinks=True)
    cfg = root / "etc/edgeocr/config.toml"
    edited = cfg.read_text().replace('device_id = "demo"', 'device_id = "line-7"')
    cfg.write_text(edited)
    mtime = cfg.stat().st_mtime_ns
    result = run_install(root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"keeping your edited {cfg}" in result.stdout
    assert cfg.read_text() == edited and cfg.stat().st_mtime_ns == mtime


def test_invalid_existing_config_is_reported_and_kept(installed: Path, tmp_path: Path):
    root = tmp_path / "root"
    shutil.copytree(installed, root, symlinks=True)
    cfg = root / "etc/edgeocr/config.toml"
    broken = cfg.read_text().replace("port = 1883", 'port = "abc"')
    assert broken != cfg.read_text()
    cfg.write_text(broken)
    result = run_install(root)
    assert result.returncode != 0
    assert "mqtt.port = 'abc': expected an integer 1-65535" in result.stderr
    assert f"install.sh: error: {cfg} is invalid (errors above): fix it" in result.stderr
    assert cfg.read_text() == broken


def test_uninstall_keeps_config_and_state_purge_removes_them(installed: Path, tmp_path: Path):
    root = tmp_path / "root"
    shutil.copytree(installed, root, symlinks=True)
    (root / "var/lib/edgeocr/outbox.sqlite").write_bytes(b"queued readings")
    config = (root / "etc/edgeocr/config.toml").read_text()
    result = run_install(root, "--uninstall")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (root / "opt/edgeocr").exists()
    assert not (root / "etc/systemd/system/edgeocr.service").exists()
    assert (root / "etc/edgeocr/config.toml").read_text() == config
    assert (root / "etc/edgeocr/mqtt-password").exists()
    assert (root / "var/lib/edgeocr/outbox.sqlite").read_bytes() == b"queued readings"
    assert "kept" in result.stdout and "skipped (--root): systemctl disable --now edgeocr.service" in result.stdout
    again = run_install(root, "--uninstall")  # idempotent
    assert again.returncode == 0, again.stderr
    purge = run_install(root, "--uninstall", "--purge")
    assert purge.returncode == 0, purge.stderr
    assert not (root / "etc/edgeocr").exists() and not (root / "var/lib/edgeocr").exists()


# ------------------------------------------------------------------------------------------------ bad input
def test_without_root_is_refused_before_anything_is_written(tmp_path: Path):
    if os.geteuid() != 0:
        result = run_install(None)  # type: ignore[arg-type]
    elif shutil.which("setpriv"):
        result = run_install(None, user="65534")  # type: ignore[arg-type]
    else:
        pytest.skip("running as root and no setpriv to drop privileges")
    assert result.returncode == 1
    assert result.stderr.strip() == ("install.sh: error: must run as root (sudo " + str(INSTALL)
                                     + " ...), or stage into a folder with --root DIR")
    assert result.stdout == ""


def _old_python(tmp_path: Path) -> str:
    """A real Python older than 3.10 if this machine has one (pyenv), else a stand-in that answers like 3.8."""
    for candidate in sorted(Path.home().glob(".pyenv/versions/3.[6-9]*/bin/python3")) + [Path("/usr/bin/python3.9")]:
        if candidate.exists():
            return str(candidate)
    fake = tmp_path / "python3.8"
    fake.write_text('#!/bin/sh\ncase "$*" in *">="*) echo 0 ;; *) echo 3.8 ;; esac\n')
    fake.chmod(0o755)
    return str(fake)


def test_unsupported_python_is_refused_and_nothing_written(tmp_path: Path):
    root = tmp_path / "root"
    old = _old_python(tmp_path)
    result = run_install(root, python=old)
    assert result.returncode == 1, result.stdout + result.stderr
    assert re.fullmatch(rf"install\.sh: error: {re.escape(old)} is Python 3\.\d; edgeocr needs Python 3\.10 or newer "
                        r"\(ai-edge-litert has no wheels for older ones\): use Raspberry Pi OS Bookworm "
                        r"\(Python 3\.11\) or --python PATH\n", result.stderr), result.stderr
    assert list(root.iterdir()) == []
    missing = run_install(root, python=str(tmp_path / "no-such-python"))
    assert missing.returncode == 1 and "no Python 3 found" in missing.stderr
    assert list(root.iterdir()) == []


def test_bad_options_are_refused(tmp_path: Path):
    for args, message in [(["--frobnicate"], "unknown option '--frobnicate'"),
                          (["--template", "nope"], "--template nope: expected a file or one of:"),
                          (["--extra", "gpu"], "--extra gpu: expected device, tflite or pi"),
                          (["--wheel", str(tmp_path / "x.whl")], "expected an existing .whl file"),
                          (["--purge"], "--purge goes with --uninstall")]:
        result = run_install(tmp_path / "root", *args)
        assert result.returncode != 0 and message in result.stderr, (args, result.stderr)
    assert not (tmp_path / "root" / "opt").exists()


# ------------------------------------------------------------------------------------------------ systemd-analyze
needs_analyze = pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze not installed (apt install systemd)")


@needs_analyze
def test_systemd_analyze_verify_passes(installed: Path, tmp_path: Path):
    unit = staged_unit(tmp_path, _edgeocr(installed))
    result = subprocess.run([SYSTEMD_ANALYZE, "verify", str(unit)], check=False, capture_output=True, text=True, timeout=60)
    problems = [line for line in result.stderr.splitlines() if "edgeocr.service" in line]
    assert result.returncode == 0 and problems == [], result.stderr
    # The check is not blind: a misspelt key and a missing binary are reported.
    (tmp_path / "bad").mkdir()
    bad = staged_unit(tmp_path / "bad", tmp_path / "missing/edgeocr",
                      UNIT.read_text().replace("WatchdogSec=", "WatchdogSecs="))
    result = subprocess.run([SYSTEMD_ANALYZE, "verify", str(bad)], check=False, capture_output=True, text=True, timeout=60)
    assert re.search(r"Unknown key( name)? 'WatchdogSecs'", result.stderr), result.stderr
    assert "is not executable" in result.stderr or result.returncode != 0


@needs_analyze
def test_systemd_analyze_security_exposure(installed: Path, tmp_path: Path, capsys):
    unit = staged_unit(tmp_path, _edgeocr(installed))
    result = subprocess.run([SYSTEMD_ANALYZE, "security", "--offline=true", "--no-pager", str(unit)],
                            check=False, capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for edgeocr\.service: (\d+\.\d+) (\w+)", result.stdout)
    assert match, result.stdout + result.stderr
    exposure = float(match.group(1))
    open_items = [re.sub(r"\s{2,}", " | ", line[2:].strip()) for line in result.stdout.splitlines()
                  if line.startswith("✗")]
    with capsys.disabled():
        print(f"\n[security] systemd-analyze security --offline=true: {exposure} {match.group(2)} "
              f"(goal <= {EXPOSURE_GOAL})")
        for item in open_items:
            print(f"[security]   {item}")
    assert exposure <= EXPOSURE_GOAL


# ------------------------------------------------------------------------------------------------ W^X
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1


def _mdwe() -> None:
    """preexec: the kernel's MemoryDenyWriteExecute (Linux >= 6.3), inherited by the exec'd daemon."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        os._exit(97)


def test_daemon_runs_without_writable_executable_memory(tmp_path: Path):
    """MemoryDenyWriteExecute=yes must not break numpy / OpenCV / LiteRT / paho: run the demo under PR_SET_MDWE."""
    probe = subprocess.run([sys.executable, "-c", "import mmap; mmap.mmap(-1, 4096, prot=7)"],
                           preexec_fn=_mdwe, check=False, capture_output=True, text=True)
    if probe.returncode == 97:
        pytest.skip("kernel without PR_SET_MDWE (Linux < 6.3)")
    assert probe.returncode != 0 and "PermissionError" in probe.stderr, "W^X not enforced: the check would be blind"
    env = {**os.environ, "PYTHONPATH": str(REPO), "STATE_DIRECTORY": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "device.cli", "run", "--max-frames", "4"], preexec_fn=_mdwe,
                            check=False, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^energy: \S+ kWh", result.stdout, re.MULTILINE), result.stdout


# ------------------------------------------------------------------------------------------------ boot config
def test_boot_config_covers_the_common_modules():
    text = (REPO / "firmware_config" / "config.txt").read_text()
    active = [line.split("#")[0].strip() for line in text.splitlines() if line.split("#")[0].strip()]
    assert "camera_auto_detect=1" in active and "[all]" in active
    assert not any(line.startswith("dtoverlay=") for line in active), "overlays stay commented out by default"
    for sensor in ("imx219", "imx708", "imx477", "ov5647", "imx296"):
        assert re.search(rf"^#dtoverlay={sensor}\s+# \S", text, re.MULTILINE), sensor
    assert (REPO / "firmware_config" / "BOOT.md").is_file()


def test_scripts_parse():
    for script in (INSTALL, REPO / "scripts" / "check_aarch64.sh"):
        assert subprocess.run(["bash", "-n", str(script)], check=False, capture_output=True).returncode == 0, script
    result = subprocess.run(["bash", str(REPO / "scripts" / "check_aarch64.sh"), "--python-version", "three"],
                            check=False, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "expected 3.X" in result.stderr
