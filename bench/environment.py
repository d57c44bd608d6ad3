"""Where the engine benchmark ran: machine, cores, load and the versions of every tool
and package measured."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

from bench.servers import cores


def _deb_version(pkg: str) -> str:
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip() or "not installed"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _py_version(mod: str) -> str:
    try:
        from importlib.metadata import version

        return version(mod)
    except Exception:
        return "not installed"


def environment(gen: int | None, tgt: int | None) -> dict[str, Any]:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": len(cores()),
        "generator_core": gen,
        "target_core": tgt,
        "taskset": shutil.which("taskset") is not None,
        "python": platform.python_version(),
        "aiohttp": _py_version("aiohttp"),
        "httptools": _py_version("httptools"),
        "uvloop": _py_version("uvloop"),
        "locust": _py_version("locust"),
        "nginx": _deb_version("nginx"),
        "wrk": _deb_version("wrk"),
        "hey": _deb_version("hey"),
        "kernel": platform.release(),
    }


def loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []
