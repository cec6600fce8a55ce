"""Who measured: CPU model, cores, GPU and driver, OS, Python; no torch import (runs on any board)."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else what platform knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _gpus() -> list[dict[str, str]]:
    """NVIDIA GPUs via nvidia-smi (name, driver, memory); Jetson boards report via /etc/nv_tegra_release."""
    smi = shutil.which("nvidia-smi")
    gpus: list[dict[str, str]] = []
    if smi:
        try:
            out = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=10, check=True).stdout
            for line in out.strip().splitlines():
                name, driver, mem = (p.strip() for p in line.split(","))
                gpus.append({"name": name, "driver": driver, "memory": mem})
        except (subprocess.SubprocessError, OSError, ValueError):
            pass
    tegra = Path("/etc/nv_tegra_release")
    if not gpus and tegra.exists():
        gpus.append({"name": "NVIDIA Jetson (integrated)", "driver": tegra.read_text().splitlines()[0].strip(),
                     "memory": "shared"})
    return gpus


def _jetson_power_mode() -> str | None:
    nvpmodel = shutil.which("nvpmodel")
    if not nvpmodel:
        return None
    try:
        out = subprocess.run([nvpmodel, "-q"], capture_output=True, text=True, timeout=10).stdout
        return " ".join(out.split())[:120] or None
    except (subprocess.SubprocessError, OSError):
        return None


@lru_cache(maxsize=1)
def machine_info() -> dict[str, Any]:
    """A fingerprint of this machine for every result line."""
    info: dict[str, Any] = {
        "hostname": platform.node(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "arch": platform.machine(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "gpus": _gpus(),
    }
    power = _jetson_power_mode()
    if power:
        info["jetson_power_mode"] = power
    return info


def device_label(device: str, machine: dict[str, Any]) -> str:
    """A short name for the device a row ran on: the GPU for cuda, else the CPU with its core count."""
    if device.startswith("cuda") and machine.get("gpus"):
        return f"{machine['gpus'][0]['name']} (cuda)"
    return f"{machine.get('cpu', 'cpu')} ({machine.get('usable_cores') or machine.get('cores')} cores)"
