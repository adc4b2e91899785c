"""The run record: one JSON object per run, the unit every later stage reads.

The schema lives here and nowhere else: the runner's fields, the protocol's measurements,
the environment's fingerprint and the bookkeeping, in the column order of runs.csv.
A protocol may add fields of its own (a notebook's metrics): they follow these columns.
The notebook side (protocols/) writes its part as a plain dict, since a remote kernel
receives only protocols/ and data/; a test checks that it writes these names.

A record is a :class:`RunRecord`, which checks itself when it is built, wherever the fields
came from: the runner, a notebook's record.json, a remote machine's zip, an imported
archive. A record that breaks the schema raises :class:`RecordError`, whose message names
the field; nothing downstream (runs.csv, the analysis, the paper) ever sees it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from typing import Any, TypedDict

from cloudbench.errors import InputError

#: The record format's history, in one place: version -> what changed. A record of an older
#: version is upgraded when it is read (:func:`upgrade`); a newer one is refused.
RECORD_FORMATS: dict[int, str] = {
    0: "records written before the format had a number: no format_version field",
    1: "format_version written in every record; the fields of RecordFields (machine, "
       "billed_s, cost, currency, finished_at, configuration, backend among them)",
}
#: Written into every record; a reader can tell which schema a record follows.
RECORD_FORMAT_VERSION = max(RECORD_FORMATS)
STATUSES = ("ok", "failed", "timeout", "oom", "wrong_device")
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
    train_nowarm_s: float | None  # None after a single epoch
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
    session: str | None  # one id per block of an environment (a Colab VM, a SLURM job...)
    local_offset_min: int  # the controller's UTC offset when the run started (local time)
    leftover_processes: int  # processes the run left running (setsid, double fork), killed
    artifacts: int  # files the notebook wrote in its working folder, kept in artifacts/


class Occasional(TypedDict, total=False):
    """Fields only some runs have: a scheduled block's slot, a refused device, frameworks a
    notebook happened to import, what did not fit in artifacts/. runs.csv puts them after
    the others when some run has them."""

    planned_at: str | None  # the block's slot of a [schedule], UTC ISO 8601
    late_s: float | None  # how long after its slot the run started
    required_device: str | None  # require_device, when a wrong_device run says what it got
    # The versions of the other frameworks a tagged notebook's kernel had imported
    # (protocols/fingerprint.py FRAMEWORKS), when it had.
    torch: str
    jax: str
    sklearn: str
    artifacts_bytes: int
    artifacts_not_kept: int  # over keep_artifacts: named in artifacts/<run_id>/NOT-KEPT.txt


class RecordFields(RunnerFields, ProtocolFields, Fingerprint, Bookkeeping, Occasional):
    """A whole record's named fields; protocols may add keys beyond these."""


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
OCCASIONAL_FIELDS = _names(Occasional)
#: runs.csv's columns, in order; any other field of a record follows them, sorted.
COLUMNS = RUNNER_FIELDS + PROTOCOL_FIELDS + FINGERPRINT_FIELDS + BOOKKEEPING_FIELDS


class RecordError(InputError, ValueError):
    """A record that cannot be a run of the schema; the message names the field."""


#: Fields that must be numbers (or absent/None) in any record, and their ranges.
_NUMBERS = {name: (0.0, None) for name in ("wall_s", "import_s", "load_s", "build_s",
                                           "train_s", "first_epoch_s", "train_nowarm_s",
                                           "eval_s", "total_s", "peak_rss_mb", "peak_gpu_mb",
                                           "billed_s", "cost", "test_loss")}
_NUMBERS.update({"test_accuracy": (0.0, 1.0)})
#: The protocol's measurements that an ok run, if it has them, has as numbers, never null
#: (train_nowarm_s is null after a single epoch: there is no epoch after the first).
_MEASURED = ("import_s", "load_s", "build_s", "train_s", "first_epoch_s", "eval_s",
             "total_s", "test_loss", "test_accuracy")
_IDENTITY = (("run_id", str), ("environment", str), ("dataset", str), ("block", int),
             ("repetition", int))


def _version(data: Mapping[str, Any]) -> int:
    version = data.get("format_version", 0)
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise RecordError(f"format_version must be a record format number, got {version!r}")
    if version > RECORD_FORMAT_VERSION:
        raise RecordError(f"format_version {version} is newer than this toolkit's "
                          f"{RECORD_FORMAT_VERSION}; update the toolkit to read it")
    return version


def upgrade(data: Mapping[str, Any]) -> dict[str, Any]:
    """The record in the current format (see RECORD_FORMATS); a newer one is refused.

    Version 0 differs only by the missing number, so it is read as it is."""
    out = dict(data)
    if _version(out) < 1:
        out["format_version"] = 1
    return out


def _check_value(name: str, value: Any) -> None:
    """JSON's own types only, every number finite and within a float's range, anywhere."""
    if value is None or isinstance(value, str | bool):
        return
    if isinstance(value, int):
        try:
            float(value)
        except OverflowError:
            raise RecordError(f"{name} is too large to be a number "
                              f"({len(str(abs(value)))} digits)") from None
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise RecordError(f"{name} must be a finite number, got {value!r}")
        return
    if isinstance(value, list | tuple):
        for k, item in enumerate(value):
            _check_value(f"{name}[{k}]", item)
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise RecordError(f"{name} has a key that is not text: {key!r}")
            _check_value(f"{name}.{key}", item)
        return
    raise RecordError(f"{name} must be a JSON value, got a {type(value).__name__}")


def check(record: Mapping[str, Any]) -> None:
    """Raise RecordError naming the field when `record` cannot be a run of the schema: the
    bookkeeping fields' types, the status, numbers that are numbers in their range (and
    finite, JSON's own values everywhere), an ok run with its timings."""
    for key, value in record.items():
        if not isinstance(key, str) or not key:
            raise RecordError(f"a field name must be non-empty text, got {key!r}")
        _check_value(key, value)
    for name, kind in _IDENTITY:
        value = record.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise RecordError(f"{name} must be a {kind.__name__}, got {value!r}")
    status = record.get("status")
    if not isinstance(status, str) or status not in STATUSES:
        raise RecordError(f"status {status!r} is not one of {', '.join(STATUSES)}")
    error = record.get("error")
    if error is not None and not isinstance(error, str):
        raise RecordError(f"error must be text or null, got {error!r}")
    if status == "ok" and all(record.get(k) is None for k in ("train_s", "total_s")):
        raise RecordError("status ok without train_s or total_s")
    for name, (low, high) in _NUMBERS.items():
        value = record.get(name)
        if value is None:
            if status == "ok" and name in _MEASURED and name in record:
                raise RecordError(f"{name} must be a number in an ok run, got null")
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RecordError(f"{name} must be a finite number, got {value!r}")
        if value < low or (high is not None and value > high):
            raise RecordError(f"{name} = {value} is out of range"
                              + (f" [{low}, {high}]" if high else ""))


def parse_object(text: str | bytes, what: str = "the record") -> dict[str, Any]:
    """A JSON object from text (a notebook's record.json, a remote machine's, an archive's):
    RecordError for invalid JSON or anything but an object. NaN and Infinity, which
    Python's json accepts, are read as numbers and refused by :func:`check`."""
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RecordError(f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise RecordError(f"{what} is a JSON {type(data).__name__}, not an object of fields")
    return data


class RunRecord(Mapping[str, Any]):
    """One run's record, checked when built (:func:`check`) and read-only after.

    A mapping, so that everything that reads records as dicts goes on reading them; the
    store writes :meth:`to_dict`. Older formats are upgraded first (:func:`upgrade`).
    """

    __slots__ = ("_data",)

    def __init__(self, fields: Mapping[str, Any]):
        if not isinstance(fields, Mapping):
            raise RecordError(f"a record is an object of fields, not a "
                              f"{type(fields).__name__}")
        data = upgrade(fields)
        check(data)
        self._data = data

    @classmethod
    def from_json(cls, text: str | bytes, what: str = "the record") -> RunRecord:
        return cls(parse_object(text, what))

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"RunRecord({self._data!r})"

    def to_dict(self) -> dict[str, Any]:
        """A plain copy, for JSON."""
        return json.loads(json.dumps(self._data))

    def replace(self, **changes: Any) -> RunRecord:
        """A new record with these fields changed, checked again."""
        return RunRecord({**self._data, **changes})


def record_problem(record: Mapping[str, Any]) -> str | None:
    """Why a record cannot be a run of the schema, or None (see :func:`check`)."""
    try:
        check(upgrade(record))
    except RecordError as exc:
        return str(exc)
    return None
