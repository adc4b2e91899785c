"""The run record: one JSON object per run, the unit every later stage reads.

The schema lives here and nowhere else: the runner's fields, the protocol's measurements,
the environment's fingerprint and the bookkeeping, in the column order of runs.csv.
A protocol may add fields of its own (a notebook's metrics): they follow these columns.
The notebook side (protocols/) writes its part as a plain dict, since a remote kernel
receives only protocols/ and data/; a test checks that it writes these names.
"""

from __future__ import annotations

from typing import Any, TypedDict

#: Written into every record; a reader can tell which schema a record follows.
RECORD_FORMAT_VERSION = 1
STATUSES = ("ok", "failed", "timeout", "oom")
#: A run with one of these is done: `oom` is the configuration's result (it does not fit),
#: kept and reported, never retried as if the run had been lost.
FINAL_STATUSES = ("ok", "oom")


class RunnerFields(TypedDict):
    """Written by the runner for every run, whatever happened."""

    run_id: str
    study: str
    environment: str
    dataset: str
    block: int
    repetition: int
    status: str  # one of STATUSES
    error: str | None
    started_at: str  # UTC, ISO 8601
    wall_s: float | None  # the runner's wall time: kernel start and staging included


class ProtocolFields(TypedDict, total=False):
    """Measured by the protocol inside the kernel (time.perf_counter, seconds)."""

    import_s: float
    load_s: float
    build_s: float
    train_s: float
    epoch_s: list[float]
    first_epoch_s: float
    train_nowarm_s: float
    eval_s: float
    total_s: float
    test_loss: float
    test_accuracy: float
    n_train: int
    n_test: int
    epochs: int
    batch_size: int
    seed: int
    peak_rss_mb: float | None  # the kernel's process tree, sampled by a local runner
    peak_gpu_mb: float | None  # the framework's own peak counter (see `allocator`)
    peak_gpu_nvml_mb: float | None  # the process's device memory as NVML reports it


class Fingerprint(TypedDict, total=False):
    """The environment as the protocol found it at the start of the run."""

    python: str
    tensorflow: str | None  # None when the backend is not TensorFlow and never loaded it
    keras: str
    backend: str  # Keras's backend: tensorflow | jax | torch
    backend_version: str
    allocator: str  # the device-memory settings that make peaks comparable across backends
    os: str
    cpu_model: str
    cpu_count: int
    ram_gb: float
    accelerator: str  # cpu | gpu | tpu
    device_name: str
    host_id: str  # a hash, never the host name


class Bookkeeping(TypedDict, total=False):
    configuration: str | None  # a sweep's cell (configuration_id); None without a sweep
    machine: str  # environments of one machine never run at the same time
    finished_at: str  # UTC, ISO 8601 with milliseconds: with started_at, when it ran
    billed_s: float  # the controller's time for the run: session start and staging included
    cost: float | None  # billed_s at the environment's price; None without a price
    currency: str | None
    warmup: bool
    attempt: int
    runner: str
    model: str
    n_params: int
    format_version: int


class RunRecord(RunnerFields, ProtocolFields, Fingerprint, Bookkeeping):
    """A whole record; protocols may add keys beyond these."""


def configuration_id(parameters: dict[str, Any]) -> str:
    """The stable id of one sweep configuration: ``name=value`` pairs sorted by name.

    Sorted, so reordering the sweep table keeps every id (and so resuming works); values
    are checked by study.spec to hold no ',' '=' or '+' (the run id's separator).
    """
    return ",".join(f"{k}={level_text(v)}" for k, v in sorted(parameters.items()))


def parse_configuration(text: str) -> dict[str, str]:
    """A configuration id back to its parameters (values as text, as in runs.csv)."""
    if not text:
        return {}
    pairs = [item.partition("=") for item in text.split(",")]
    return {name: value for name, _, value in pairs}


def level_text(value: Any) -> str:
    """A level as the configuration id and runs.csv write it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def _names(kind: Any) -> list[str]:
    return list(kind.__annotations__)


RUNNER_FIELDS = _names(RunnerFields)
PROTOCOL_FIELDS = _names(ProtocolFields)
FINGERPRINT_FIELDS = _names(Fingerprint)
BOOKKEEPING_FIELDS = _names(Bookkeeping)
#: runs.csv's columns, in order; any other field of a record follows them, sorted.
COLUMNS = RUNNER_FIELDS + PROTOCOL_FIELDS + FINGERPRINT_FIELDS + BOOKKEEPING_FIELDS


#: Fields that must be numbers (or absent/None) in any record, and their ranges.
_NUMBERS = {name: (0.0, None) for name in ("wall_s", "import_s", "load_s", "build_s",
                                           "train_s", "first_epoch_s", "train_nowarm_s",
                                           "eval_s", "total_s", "peak_rss_mb", "peak_gpu_mb",
                                           "billed_s", "cost", "test_loss")}
_NUMBERS.update({"test_accuracy": (0.0, 1.0)})


def record_problem(record: dict[str, Any]) -> str | None:
    """Why a record cannot be a run of the schema, or None: the bookkeeping fields' types,
    the statuses, numbers that are numbers in their range, and an ok run with its timings.
    For records that come from outside this process (an imported archive)."""
    for name, kind in (("run_id", str), ("environment", str), ("dataset", str),
                       ("block", int), ("repetition", int)):
        value = record.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            return f"{name} must be a {kind.__name__}, got {value!r}"
    if record.get("status") not in STATUSES:
        return f"status {record.get('status')!r} is not one of {', '.join(STATUSES)}"
    for name, (low, high) in _NUMBERS.items():
        value = record.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value \
                or value in (float("inf"), float("-inf")):
            return f"{name} must be a finite number, got {value!r}"
        if value < low or (high is not None and value > high):
            return f"{name} = {value} is out of range" + (f" [{low}, {high}]" if high else "")
    if record["status"] == "ok" and not any(
            isinstance(record.get(k), int | float) for k in ("train_s", "total_s")):
        return "status ok without train_s or total_s"
    return None
