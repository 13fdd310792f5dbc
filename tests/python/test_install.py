"""`ferrocell install` and the directories the kernel uses by default."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

import kernel_helpers as kh
from kernel_helpers import ok, run

LOGOS = ("logo-32x32.png", "logo-64x64.png", "logo-svg.svg")


def install(*args, env=None):
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([str(kh.BINARY), "install", *args], env=full_env, check=True,
                          capture_output=True, text=True, timeout=60)


def check_spec(spec_dir: Path):
    spec = json.loads((spec_dir / "kernel.json").read_text())
    assert spec["language"] == "rust"
    assert spec["interrupt_mode"] == "message"
    assert spec["display_name"]
    assert "{connection_file}" in spec["argv"]
    program = Path(spec["argv"][0])
    assert program.is_absolute() and program.is_file()
    assert os.access(program, os.X_OK)
    for logo in LOGOS:
        repo_logo = kh.REPO / "kernelspec" / logo
        assert (spec_dir / logo).read_bytes() == repo_logo.read_bytes(), logo
    return spec


def test_install_prefix(tmp_path):
    install("--prefix", str(tmp_path))
    check_spec(tmp_path / "share" / "jupyter" / "kernels" / "ferrocell")


def test_install_twice_overwrites(tmp_path):
    install("--prefix", str(tmp_path))
    install("--prefix", str(tmp_path))
    check_spec(tmp_path / "share" / "jupyter" / "kernels" / "ferrocell")


def test_install_sys_prefix_uses_virtual_env(tmp_path):
    install("--sys-prefix", env={"VIRTUAL_ENV": str(tmp_path)})
    check_spec(tmp_path / "share" / "jupyter" / "kernels" / "ferrocell")


def test_install_user(tmp_path):
    env = {"HOME": str(tmp_path), "JUPYTER_DATA_DIR": "", "XDG_DATA_HOME": ""}
    full_env = {k: v for k, v in dict(os.environ, **env).items() if v != ""}
    subprocess.run([str(kh.BINARY), "install", "--user"], env=full_env, check=True,
                   capture_output=True, timeout=60)
    check_spec(tmp_path / ".local" / "share" / "jupyter" / "kernels" / "ferrocell")


def test_installed_spec_is_what_jupyter_finds(ferrocell_environment):
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec("ferrocell")
    assert spec.language == "rust"
    assert spec.interrupt_mode == "message"
    assert Path(spec.resource_dir).is_relative_to(ferrocell_environment["prefix"])


def test_logos_are_valid_pngs():
    import struct
    import zlib

    for name, size in (("logo-32x32.png", 32), ("logo-64x64.png", 64)):
        data = (kh.REPO / "kernelspec" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", data[16:24])
        assert (width, height) == (size, size)
        # Every chunk's CRC is right.
        pos = 8
        while pos < len(data):
            (length,) = struct.unpack(">I", data[pos:pos + 4])
            chunk = data[pos + 4:pos + 8 + length]
            (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
            assert zlib.crc32(chunk) & 0xFFFFFFFF == crc
            pos += 12 + length


def test_default_directories(start_kernel, tmp_path):
    """Without FERROCELL_CACHE / FERROCELL_DATA_DIR the kernel uses ~/.cache/ferrocell
    and ~/.local/share/ferrocell."""
    home = tmp_path / "home"
    home.mkdir()
    rustup_home = os.environ.get("RUSTUP_HOME") or str(Path.home() / ".rustup")
    cargo_home = os.environ.get("CARGO_HOME") or str(Path.home() / ".cargo")
    env = {"HOME": str(home), "FERROCELL_CACHE": None, "FERROCELL_DATA_DIR": None,
           "XDG_CACHE_HOME": None, "XDG_DATA_HOME": None,
           # rustup's rustc proxy finds its toolchains from these, not from HOME.
           "RUSTUP_HOME": rustup_home, "CARGO_HOME": cargo_home}
    _, kc = start_kernel(env=env)
    ok(*run(kc, "6 * 7", timeout=kh.FIRST_CELL_TIMEOUT))
    cache = home / ".cache" / "ferrocell"
    assert cache.is_dir() and any(cache.iterdir())
    assert (home / ".local" / "share" / "ferrocell").is_dir()


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_cli_help(flag):
    out = subprocess.run([str(kh.BINARY), flag], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0
    assert "install" in out.stdout
