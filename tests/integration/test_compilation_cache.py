"""metanas.compilation_cache: the per-user directory by default, off by setting or environment, a size bound, and
JAX_COMPILATION_CACHE_DIR (the test session's own cache) left alone."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import pytest

from metanas import compilation_cache as C

REPO = Path(__file__).resolve().parents[2]


def test_resolve_defaults_paths_and_off():
    home = Path.home()
    assert C.resolve("auto", {}) == home / ".cache" / "metanas" / "jax"
    assert C.resolve(True, {"XDG_CACHE_HOME": "/x/cache"}) == Path("/x/cache/metanas/jax")
    assert C.resolve("auto", {"XDG_CACHE_HOME": "/x", "METANAS_CACHE_DIR": "/m"}) == Path("/m/jax")
    assert C.resolve("~/c", {}) == home / "c"
    for off in (None, False, "null", "off", "none", ""):
        assert C.resolve(off, {}) is None
    for env_off in ("0", "off", "false", ""):
        assert C.resolve("auto", {C.ENV: env_off}) is None  # the environment wins over the setting
    assert C.resolve(None, {C.ENV: "/e"}) == Path("/e")
    assert C.resolve(None, {C.ENV: "auto", "XDG_CACHE_HOME": "/x"}) == Path("/x/metanas/jax")
    jax_env = {C.JAX_ENV: "/session"}  # the caller's own JAX cache: "auto" and None leave it, a directory wins
    assert C.resolve("auto", jax_env) is None and C.resolve(None, jax_env) is None
    assert C.resolve("/d", jax_env) == Path("/d") and C.resolve("/d", jax_env | {C.ENV: "off"}) is None
    with pytest.raises(ValueError, match="expected 'auto', a directory, or null"):
        C.resolve(3, {})


def test_the_session_cache_of_the_caller_wins(monkeypatch, tmp_path):
    monkeypatch.setenv(C.JAX_ENV, str(tmp_path / "session"))
    before = jax.config.jax_compilation_cache_dir
    assert C.configure("auto") == str(tmp_path / "session") == C.configure(None)
    assert jax.config.jax_compilation_cache_dir == before
    monkeypatch.setenv(C.JAX_ENV, "")
    assert C.configure("auto") is None


PROBE = """
import json, sys, jax, jax.numpy as jnp
from metanas import compilation_cache as C
d = C.configure(sys.argv[1] if sys.argv[1] != "None" else None)
jax.jit(lambda x: jnp.sin(x) * 2)(jnp.ones(3)).block_until_ready()
print(json.dumps({"dir": d, "jax_dir": jax.config.jax_compilation_cache_dir,
                  "max": jax.config.jax_compilation_cache_max_size}))
"""


def probe(setting, tmp_path, **env):
    e = {k: v for k, v in os.environ.items() if k not in (C.JAX_ENV, C.ENV, "JAX_COMPILATION_CACHE_MAX_SIZE")}
    e |= {"XDG_CACHE_HOME": str(tmp_path / "xdg"), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
          "PYTHONPATH": str(REPO)} | env
    p = subprocess.run([sys.executable, "-c", PROBE, str(setting)], capture_output=True, text=True, env=e,
                       timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_on_by_default_in_the_user_cache_dir_with_a_size_bound(tmp_path):
    out = probe("auto", tmp_path)
    d = tmp_path / "xdg" / "metanas" / "jax"
    assert out == {"dir": str(d), "jax_dir": str(d), "max": C.DEFAULT_MAX_BYTES}
    assert [p for p in d.iterdir() if not p.name.startswith(".")]  # the program was written
    assert probe("auto", tmp_path, JAX_COMPILATION_CACHE_MAX_SIZE="1000000")["max"] == 1_000_000


def test_a_directory_setting_wins_over_jax_env(tmp_path):
    out = probe(tmp_path / "mine", tmp_path, JAX_COMPILATION_CACHE_DIR=str(tmp_path / "theirs"))
    assert out["dir"] == out["jax_dir"] == str(tmp_path / "mine") and (tmp_path / "mine").is_dir()


def test_off_by_setting_or_environment(tmp_path):
    assert probe(None, tmp_path) == {"dir": None, "jax_dir": None, "max": -1}
    assert probe("auto", tmp_path, METANAS_COMPILATION_CACHE="off")["dir"] is None
    assert not (tmp_path / "xdg").exists()
    theirs = tmp_path / "theirs"  # forced off: not even JAX's own variable's cache is written
    assert probe("auto", tmp_path, METANAS_COMPILATION_CACHE="0", JAX_COMPILATION_CACHE_DIR=str(theirs))["dir"] is None
    assert not theirs.exists() or not [p for p in theirs.iterdir() if not p.name.startswith(".")]
