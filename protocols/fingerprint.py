"""The kernel's fingerprint: the machine and the software a run really had.

Standard library only, and no import of the toolkit: a tagged notebook's run appends this
module's source as a last cell of the executed copy (runners.phases), so it describes the
kernel that ran the notebook, wherever that kernel is; the toolkit's own protocol calls the
same functions through protocols.cnn_protocol.
"""

import hashlib
import json
import os
import platform
import resource
import socket
import sys

FRAMEWORKS = ("tensorflow", "keras", "torch", "jax", "sklearn")


def cpu_model():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def ram_gb():
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 2)
    except (ValueError, OSError, AttributeError):
        return None


def host_id():
    """A stable, anonymous id of the machine: a hash, never the host name itself."""
    machine = ""
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            with open(path) as fh:
                machine = fh.read().strip()
            break
        except OSError:
            continue
    return hashlib.sha256(f"{socket.gethostname()}|{machine}".encode()).hexdigest()[:12]


def peak_rss_mb():
    """This process's peak resident memory (a local runner adds the whole process tree)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


def _device():
    """(accelerator, device name) from the frameworks the notebook already imported."""
    torch, tf, jax = (sys.modules.get(n) for n in ("torch", "tensorflow", "jax"))
    try:
        if torch is not None and torch.cuda.is_available():
            return "gpu", torch.cuda.get_device_name(0)
        if tf is not None:
            gpus = tf.config.list_physical_devices("GPU")
            if gpus:
                details = tf.config.experimental.get_device_details(gpus[0])
                return "gpu", details.get("device_name", gpus[0].name)
        if jax is not None:
            device = jax.devices()[0]
            if device.platform != "cpu":
                return device.platform, device.device_kind
    except Exception:  # a framework's device query must not cost the run its record
        pass
    return "cpu", cpu_model()


def kernel_fingerprint():
    accelerator, device_name = _device()
    found = {"python": platform.python_version(),
             "os": f"{platform.system()} {platform.release()}", "cpu_model": cpu_model(),
             "cpu_count": os.cpu_count(), "ram_gb": ram_gb(), "accelerator": accelerator,
             "device_name": device_name, "host_id": host_id(), "peak_rss_mb": peak_rss_mb()}
    for name in FRAMEWORKS:
        if name in sys.modules:
            found[name] = getattr(sys.modules[name], "__version__", "")
    return found


def print_fingerprint(mark):
    print(mark + json.dumps(kernel_fingerprint()), flush=True)
