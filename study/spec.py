"""The study file: loaded from TOML and validated before anything runs.

Every error is a :class:`SpecError` that names the file, the key and what was expected,
because a study that fails an hour in over a typo wastes the researcher's machine time.
"""

from __future__ import annotations

import hashlib
import itertools
import keyword
import math
import re
import tomllib
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import cloudbench
from cloudbench.data.datasets import IMAGE_SUFFIXES, DatasetError, check_dataset
from cloudbench.data.procedures import DEFAULT_PROCEDURE, procedure_names
from cloudbench.errors import InputError
from cloudbench.study.files import (
    DEFAULT_KEEP_ARTIFACTS,
    FilesError,
    ProtocolFile,
    choose_files,
    parse_size,
)
from cloudbench.study.notebook import NotebookError, Protocol
from cloudbench.study.notebook import inspect as inspect_notebook
from cloudbench.study.record import (
    BOOKKEEPING_FIELDS,
    FINGERPRINT_FIELDS,
    OCCASIONAL_FIELDS,
    PROTOCOL_FIELDS,
    RUNNER_FIELDS,
    configuration_id,
    level_text,
)
from cloudbench.study.registry import OptionError, load_runner, runner_names
from cloudbench.study.schedule import Schedule, ScheduleError, parse_schedule

#: The folder that holds the toolkit's subpackages (study/, runners/...): the repository
#: in a checkout, the installed ``cloudbench`` package otherwise.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: The folder a fresh interpreter needs on its path to ``import cloudbench``.
IMPORT_ROOT = Path(cloudbench.__file__).resolve().parent.parent

SOURCES = ("shapes", "folder", "keras")
#: The source of the implicit dataset of a notebook that loads its own data.
OWN_DATA = "notebook"
KERAS_DATASETS = ("mnist", "fashion_mnist", "cifar10")
HYPOTHESES = ("two-sided", "less", "greater")
ORDERS = ("interleaved", "sequential")
LANGUAGES = ("en", "es")
# Parameters the runner fills in for every run; a study may not set them.
RESERVED_PARAMETERS = ("record_path", "dataset", "seed", "accelerator", "backend")
#: Keras 3's backends; an environment's `backend` sets KERAS_BACKEND for its kernel.
BACKENDS = ("tensorflow", "jax", "torch")
#: More cells than a sweep of a few factors needs: a larger one is a mistake in the file.
MAX_CONFIGURATIONS = 1000
#: More runs than a study on real machines can make (a year of 30 s runs): a typo.
MAX_RUNS = 1_000_000
#: More repetitions than any study needs (power analyses ask for tens): a larger number is
#: a typo, and would only make planning slow.
MAX_REPETITIONS = 10_000
DEFAULT_METRICS = ("train_s", "total_s", "test_accuracy", "test_loss", "peak_rss_mb")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*\Z")  # \Z: "$" would take a final "\n"
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
#: Names become parts of file names (run ids, folders), which file systems cap at 255 bytes.
MAX_NAME = 64
#: The protocol's seeds (study seed + repetition - 1) feed numpy, which takes 0 to 2**32 - 1.
MAX_SEED = 2**32 - 1


class SpecError(InputError, ValueError):
    """A study file that cannot be run, with the place and the reason."""

    def __init__(self, path: Path | str, key: str, message: str):
        super().__init__(message, path=path, key=key)  # "path: key: message"


@dataclass(frozen=True)
class Dataset:
    name: str
    source: str
    images: int | None = None  # shapes: how many to generate; others: an optional cap
    path: Path | None = None  # folder
    size: tuple[int, int] | None = None  # folder: (width, height) after resizing
    color: str = "grayscale"  # folder: grayscale | rgb
    keras_name: str | None = None  # keras
    test_fraction: float = 1 / 3

    def protocol_config(self, path_override: str | None = None) -> dict[str, Any]:
        """The `dataset` parameter handed to the notebook (plain JSON types only)."""
        config: dict[str, Any] = {"name": self.name, "source": self.source,
                                  "test_fraction": self.test_fraction}
        if self.images is not None:
            config["images"] = self.images
        if self.path is not None:
            config["path"] = path_override or str(self.path)
        if self.size is not None:
            config["size"] = list(self.size)
            config["color"] = self.color
        if self.keras_name is not None:
            config["keras_name"] = self.keras_name
        return config


@dataclass(frozen=True)
class Price:
    """What an hour of an environment costs, and where that figure comes from.

    Either a price per hour, or Colab's compute units per hour times a price per unit.
    """

    per_hour: float
    currency: str = "USD"
    source: str = ""  # a dated source: a URL and the date it was read, or "stated by ..."
    name: str | None = None  # the entry of study/prices.toml, when referred to by name
    compute_units_per_hour: float | None = None
    price_per_unit: float | None = None

    def cost(self, seconds: float) -> float:
        return self.per_hour * seconds / 3600


@dataclass(frozen=True)
class Environment:
    name: str
    runner: str
    env: dict[str, str] = field(default_factory=dict)
    gpu: str | None = None
    tpu: str | None = None
    kernel: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    timeout_s: float | None = None
    options: dict[str, Any] = field(default_factory=dict)  # the runner's own keys
    backend: str = "tensorflow"
    #: The machine it runs on: environments of one machine never run at the same time;
    #: different machines run concurrently. Defaults: the runner's (runners.base).
    machine: str = ""
    price: Price | None = None
    #: A session that got other hardware stops before its runs (status wrong_device): the
    #: device names (or parts of them, any case) this environment accepts.
    require_device: tuple[str, ...] = ()

    @property
    def accelerator(self) -> str:
        return "gpu" if self.gpu else "tpu" if self.tpu else "cpu"


@dataclass(frozen=True)
class Configuration:
    """One cell of a sweep: protocol parameters with a stable id (study.record)."""

    id: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class Sweep:
    """Protocol parameters crossed with each other, less the excluded combinations."""

    parameters: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    exclude: tuple[dict[str, Any], ...] = ()

    def configurations(self) -> list[Configuration]:
        """Every included combination, in the file's order of levels (the first key slowest).

        Without a sweep, one configuration with the empty id: run ids stay as before.
        """
        if not self.parameters:
            return [Configuration("", {})]
        names = list(self.parameters)
        out = []
        for values in itertools.product(*self.parameters.values()):
            combo = dict(zip(names, values, strict=True))
            if not any(all(combo[k] == v for k, v in rule.items()) for rule in self.exclude):
                out.append(Configuration(configuration_id(combo), combo))
        return out


def __getattr__(name: str) -> Any:
    """``PROCEDURES``: the analysis' procedures, as their catalogue (data.procedures) has
    them now (SPSS's and the robust one built in, and any registered)."""
    if name == "PROCEDURES":
        return procedure_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class Analysis:
    #: The metrics to analyse; empty: the protocol's default (paper.build.default_metrics).
    metrics: tuple[str, ...] = ()
    alpha: float = 0.05
    language: str = "en"
    #: A name of the procedure catalogue (data.procedures). Built in: "spss", Shapiro-Wilk,
    #: Levene, Student's or Welch's t, else Mann-Whitney; "robust", Brunner-Munzel's
    #: studentized permutation test for every comparison (docs/statistics.md).
    procedure: str = DEFAULT_PROCEDURE
    #: A relative equivalence margin (0.05: +-5 %) for the TOST; None: no equivalence test.
    equivalence: float | None = None


@dataclass(frozen=True)
class Study:
    path: Path
    name: str
    repetitions: int | str  # an int, or "auto" (see max_repetitions / target_halfwidth)
    seed: int
    order: str
    hypothesis: str
    notebook: Path
    parameters: dict[str, Any]
    datasets: tuple[Dataset, ...]
    environments: tuple[Environment, ...]
    analysis: Analysis
    sweep: Sweep = field(default_factory=Sweep)
    kernel: str = "python3"
    timeout_s: float = 1800.0
    retries: int = 1
    warmup: int = 0
    max_repetitions: int = 30
    min_repetitions: int = 5
    target_halfwidth: float = 0.05
    description: str = ""
    #: The files the notebook reads beside it, copied into every run's working folder.
    files: tuple[ProtocolFile, ...] = ()
    #: Files of the notebook's folder left out by default for their size (names).
    files_left_out: tuple[str, ...] = ()
    #: Bytes of what a run writes in its working folder kept under artifacts/<run_id>/.
    keep_artifacts: int = DEFAULT_KEEP_ARTIFACTS
    #: When the blocks run ([schedule]); None: all in one sitting, as soon as possible.
    schedule: Schedule | None = None

    @property
    def planned_repetitions(self) -> int:
        """Repetitions planned up front (for "auto", the minimum before the stopping rule)."""
        return self.repetitions if isinstance(self.repetitions, int) else self.min_repetitions

    def environment(self, name: str) -> Environment:
        for env in self.environments:
            if env.name == name:
                return env
        raise SpecError(self.path, "environments", f"no environment named {name!r}; "
                        f"the study has {', '.join(e.name for e in self.environments)}")

    @cached_property
    def configurations(self) -> list[Configuration]:
        return self.sweep.configurations()

    def configuration(self, config_id: str) -> Configuration:
        for config in self.configurations:
            if config.id == config_id:
                return config
        raise SpecError(self.path, "sweep", f"no configuration {config_id!r}")

    def dataset(self, name: str) -> Dataset:
        for ds in self.datasets:
            if ds.name == name:
                return ds
        raise SpecError(self.path, "datasets", f"no dataset named {name!r}")

    def file_sha256(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


class _Table:
    """Typed, key-checked access to one TOML table, so errors can name `section.key`."""

    def __init__(self, path: Path, where: str, table: Any, allowed: tuple[str, ...] | None):
        self.path, self.where = path, where
        if not isinstance(table, dict):
            raise SpecError(path, where, f"expected a table, got {type(table).__name__}")
        unknown = sorted(set(table) - set(allowed)) if allowed is not None else []
        if unknown:
            raise SpecError(path, self.key(unknown[0]),
                            f"unknown key; expected one of: {', '.join(allowed)}")
        self.table = table

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def get(self, name: str, kind: type | tuple[type, ...], default: Any = ...,
            choices: tuple[Any, ...] | None = None) -> Any:
        if name not in self.table:
            if default is ...:
                raise SpecError(self.path, self.key(name), "missing required key")
            return default
        value = self.table[name]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        # TOML booleans are ints to Python; never accept one where a number is meant.
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            names = " or ".join(k.__name__ for k in kinds)
            raise SpecError(self.path, self.key(name),
                            f"expected {names}, got {type(value).__name__} {value!r}")
        if choices is not None and value not in choices:
            raise SpecError(self.path, self.key(name),
                            f"{value!r} is not one of: {', '.join(map(str, choices))}")
        return value

    def positive(self, name: str, kind: type, default: Any = ..., minimum: float = 1) -> Any:
        value = self.get(name, (int, float) if kind is float else kind, default)
        if isinstance(value, float) and not math.isfinite(value):
            raise SpecError(self.path, self.key(name), f"must be a finite number, got {value}")
        if value is not None and value < minimum:
            raise SpecError(self.path, self.key(name), f"must be at least {minimum}, got {value}")
        return float(value) if kind is float and value is not None else value


def resolve_path(raw: str, spec_path: Path) -> Path:
    """Relative paths are tried against the working directory, then the toolkit's root.

    The second lets `protocols/cnn_train.ipynb` work from anywhere once installed.
    """
    candidate = Path(raw).expanduser()
    if candidate.is_absolute():
        return candidate
    for base in (Path.cwd(), spec_path.parent, PROJECT_ROOT):
        if (base / candidate).exists():
            return (base / candidate).resolve()
    return (Path.cwd() / candidate).resolve()


def _check_name(path: Path, key: str, value: str) -> str:
    if not NAME_RE.match(value):
        raise SpecError(path, key, f"{value!r} must start with a letter or digit and hold only "
                        "letters, digits, '_', '.' and '-' (it names folders and files)")
    if len(value) > MAX_NAME:
        raise SpecError(path, key, f"at most {MAX_NAME} characters (it names files, whose "
                        f"names the file system limits), got {len(value)}")
    return value


def _check_env(path: Path, key: str, env: dict[str, Any]) -> dict[str, str]:
    """Variables as an operating system takes them: a name of letters, digits and '_' not
    starting with a digit; a text value without NUL."""
    for name, value in env.items():
        if not ENV_NAME_RE.match(name):
            raise SpecError(path, f"{key}.{name}" if name else key,
                            f"{name!r} is not a variable name: letters, digits and '_', "
                            "not starting with a digit")
        if not isinstance(value, str):
            raise SpecError(path, f"{key}.{name}",
                            f"environment variables are strings; write {name} = \"{value}\"")
        if "\x00" in value:
            raise SpecError(path, f"{key}.{name}", "a value cannot hold a NUL character")
    return dict(env)


def _check_kernels(path: Path, s: _Table, environments: tuple[Environment, ...]) -> None:
    """A kernel that runs here must exist here (the Jupyter kernelspecs of this machine)."""
    here = [(i, e) for i, e in enumerate(environments)
            if getattr(load_runner(e.runner), "runs_here", False)
            and getattr(load_runner(e.runner), "local_files", False)]
    if not here:
        return
    from jupyter_client.kernelspec import KernelSpecManager

    known = set(KernelSpecManager().find_kernel_specs()) | {"python3"}  # ipykernel's own
    for i, env in here:
        name = env.kernel or s.get("kernel", str, "python3")
        if name not in known:
            key = f"environments[{i}].kernel" if env.kernel else "study.kernel"
            raise SpecError(path, key, f"no Jupyter kernel {name!r} on this machine; it has: "
                            f"{', '.join(sorted(known))} (`jupyter kernelspec list`)")


def _check_parameters(path: Path, key: str, params: dict[str, Any]) -> dict[str, Any]:
    for name in params:
        # papermill writes the names into the injected cell as code, unescaped.
        if not name.isidentifier() or keyword.iskeyword(name):
            raise SpecError(path, f"{key}.{name}", "parameter names must be Python identifiers")
        if name in RESERVED_PARAMETERS:
            raise SpecError(path, f"{key}.{name}",
                            f"set by the runner for every run; reserved: {RESERVED_PARAMETERS}")
    return dict(params)


#: Where the toolkit's own protocol lives: its folder is the toolkit's code, not its input.
BUILT_IN_PROTOCOLS = PROJECT_ROOT / "protocols"


def own_data(notebook: Path) -> Dataset:
    """The one "dataset" of a study without [[datasets]]: whatever the notebook loads itself,
    named after the notebook so that run ids and tables read naturally."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", notebook.stem).strip("-.") or "notebook"
    if not name[0].isalnum():
        name = "nb" + name
    return Dataset(name=name[:64], source=OWN_DATA)


def _protocol_files(path: Path, notebook: Path, globs: list[str] | None,
                    check_data: bool) -> tuple[tuple[ProtocolFile, ...], tuple[str, ...]]:
    """[protocol] files, or the notebook's folder by default (none for the built-in
    protocol, whose folder is the toolkit's own code), with what the default left out."""
    folder = notebook.parent
    if globs is None and (not check_data or folder.resolve() == BUILT_IN_PROTOCOLS.resolve()
                          or not notebook.is_file()):
        return (), ()
    try:
        return choose_files(folder, notebook, None if globs is None else tuple(globs),
                            also_not=(path,))
    except FilesError as exc:
        raise SpecError(path, "protocol.files", str(exc)) from exc
    except OSError as exc:
        raise SpecError(path, "protocol.files", f"cannot read {folder}: "
                        f"{exc.strerror or exc}") from exc


def read_protocol(path: Path, notebook: Path, key: str = "protocol.notebook") -> Protocol:
    """The notebook as a protocol (parameters, declared rules, phases), once it passed every
    check of study.notebook (tags, phases, metrics)."""
    try:
        return inspect_notebook(notebook)
    except NotebookError as exc:
        raise SpecError(path, key, str(exc)) from exc


def _metrics_of(protocol: Protocol) -> set[str] | None:
    """The columns a metric can be, for a protocol: the record's for the built-in way, the
    phases' times for a tagged notebook; None when its metrics cell may add any name."""
    if protocol.writes_record:
        return set(PROTOCOL_FIELDS + FINGERPRINT_FIELDS + BOOKKEEPING_FIELDS
                   + OCCASIONAL_FIELDS) | {"wall_s"}
    if protocol.metrics_cell is not None:
        return None
    phases = [f"{p}_s" for p in protocol.phases]
    return {*phases, *(f"{p}_client_s" for p in protocol.phases), "total_s", "other_s",
            "total_client_s", "peak_rss_mb", "wall_s", "billed_s", "cost"}


def _check_against_rules(path: Path, protocol: Protocol, values: list[tuple[str, Any]]) -> None:
    """Each (key, value) against the rule its notebook declares for the parameter."""
    for key, value in values:
        rule = protocol.rules.get(key.rpartition(".")[2].split("[")[0])
        problem = rule.problem(value) if rule is not None else None
        if problem:
            raise SpecError(path, key, f"{problem} (as {protocol.path.name} declares it)")


def _check_fits_in_memory(path: Path, key: str, dataset: Dataset) -> None:
    """Refuse a set the kernel could never hold: its images as float32, with the copies
    the protocol makes (uint8 as loaded, float32 scaled), against this machine's memory."""
    import psutil

    width, height = dataset.size or (28, 28)
    channels = 3 if dataset.color == "rgb" and dataset.size else 1
    needed = (dataset.images or 0) * width * height * channels * (1 + 4)
    total = psutil.virtual_memory().total
    if needed > total:
        raise SpecError(path, key, f"{dataset.images} images of {width}x{height}x{channels} "
                        f"need about {needed / 2**30:.1f} GiB in the kernel; this machine has "
                        f"{total / 2**30:.1f} GiB")


def _load_dataset(path: Path, i: int, raw: Any, check_data: bool = True) -> Dataset:
    t = _Table(path, f"datasets[{i}]", raw, ("name", "source", "images", "path", "size",
                                            "color", "keras_name", "test_fraction"))
    name = _check_name(path, t.key("name"), t.get("name", str))
    source = t.get("source", str, "shapes", choices=SOURCES)
    images = t.positive("images", int, None, minimum=6)
    test_fraction = t.get("test_fraction", (int, float), 1 / 3)
    if not 0 < test_fraction < 1:
        raise SpecError(path, t.key("test_fraction"),
                        f"must be between 0 and 1, got {test_fraction}")
    ds_path = size = keras_name = None
    color = t.get("color", str, "grayscale", choices=("grayscale", "rgb"))
    if source == "folder":
        ds_path = resolve_path(t.get("path", str), path)
        raw_size = t.get("size", list, [28, 28])
        if len(raw_size) != 2 or not all(isinstance(v, int) and v > 0 for v in raw_size):
            raise SpecError(path, t.key("size"),
                            f"expected [width, height] in pixels, got {raw_size}")
        size = (raw_size[0], raw_size[1])
    elif "path" in raw:
        raise SpecError(path, t.key("path"), "only a 'folder' dataset has a path")
    if source == "keras":
        keras_name = t.get("keras_name", str, name)
        if keras_name not in KERAS_DATASETS:
            raise SpecError(path, t.key("keras_name" if "keras_name" in raw else "name"),
                            f"{keras_name!r} is not a Keras dataset; expected one of "
                            f"{', '.join(KERAS_DATASETS)}")
    dataset = Dataset(name=name, source=source, images=images, path=ds_path, size=size,
                      color=color, keras_name=keras_name, test_fraction=float(test_fraction))
    if images is not None and source != "keras":
        _check_fits_in_memory(path, t.key("images"), dataset)
    try:
        if check_data:
            check_dataset(dataset.protocol_config())
    except DatasetError as exc:
        raise SpecError(path, t.key("path" if source == "folder" else "source"), str(exc)) from exc
    if images is None and source == "folder" and check_data and ds_path is not None:
        # Every image of the folder is loaded: count them, at the size they are resized to.
        found = sum(1 for p in ds_path.glob("*/*") if p.suffix.lower() in IMAGE_SUFFIXES)
        _check_fits_in_memory(path, t.key("size"), replace(dataset, images=found))
    return dataset


#: Keys every environment may have; a runner declares its own beside them.
ENVIRONMENT_KEYS = ("name", "runner", "env", "gpu", "tpu", "kernel", "parameters", "timeout_s",
                    "require_device",
                    "backend", "machine", "price", "price_per_hour", "compute_units_per_hour",
                    "price_per_unit", "currency", "price_source")
PRICES_FILE = Path(__file__).resolve().parent / "prices.toml"


def list_prices() -> dict[str, dict[str, Any]]:
    """The shipped table of documented list prices (study/prices.toml), by name."""
    return tomllib.loads(PRICES_FILE.read_text(encoding="utf-8"))


def _load_price(path: Path, t: _Table) -> Price | None:
    """An environment's price: by name from study/prices.toml, or stated with its source."""
    named = t.get("price", str, None)
    stated = {k: t.table[k] for k in ("price_per_hour", "compute_units_per_hour",
                                      "price_per_unit") if k in t.table}
    if named is not None and stated:
        raise SpecError(path, t.key(next(iter(stated))),
                        f"the price is named ({named!r}); state it or name it, not both")
    if named is not None:
        prices = list_prices()
        if named not in prices:
            raise SpecError(path, t.key("price"), f"no list price named {named!r} in "
                            f"{PRICES_FILE.name}; it has: {', '.join(prices)}")
        entry = prices[named]
        units, unit_price = entry.get("compute_units_per_hour"), entry.get("price_per_unit")
        per_hour = entry.get("price_per_hour", (units or 0) * (unit_price or 0))
        return Price(per_hour=float(per_hour), currency=entry.get("currency", "USD"),
                     source=f"{entry['source']} ({entry['date']})", name=named,
                     compute_units_per_hour=units, price_per_unit=unit_price)
    if not stated:
        for key in ("currency", "price_source"):
            if key in t.table:
                raise SpecError(path, t.key(key), "given without a price (price_per_hour, "
                                "or compute_units_per_hour and price_per_unit, or price)")
        return None
    for key in stated:
        t.positive(key, float, minimum=0)
    units, unit_price = stated.get("compute_units_per_hour"), stated.get("price_per_unit")
    if "price_per_hour" in stated and (units is not None or unit_price is not None):
        raise SpecError(path, t.key("price_per_hour"), "state price_per_hour, or "
                        "compute_units_per_hour with price_per_unit, not both")
    if "price_per_hour" not in stated and (units is None or unit_price is None):
        missing = "price_per_unit" if unit_price is None else "compute_units_per_hour"
        raise SpecError(path, t.key(missing), "compute units need both "
                        "compute_units_per_hour and price_per_unit")
    source = t.get("price_source", str, "")
    if not source.strip():
        raise SpecError(path, t.key("price_source"), "say where the price comes from and "
                        "when (a URL and a date): prices change")
    per_hour = stated.get("price_per_hour", (units or 0) * (unit_price or 0))
    return Price(per_hour=float(per_hour), currency=t.get("currency", str, "USD"),
                 source=source.strip(), compute_units_per_hour=units,
                 price_per_unit=unit_price)


def _unknown_key_message(runner: str, key: str, allowed: tuple[str, ...]) -> str:
    """Name the runners that do take the key, the likely fix of a misplaced one."""
    others = []
    for name in runner_names():
        try:
            if any(o.name == key for o in load_runner(name).options):
                others.append(name)
        except Exception:  # a broken third-party plugin must not hide this error
            continue
    hint = (f"; it is a key of runner {' or '.join(repr(o) for o in others)}" if others else "")
    return f"unknown key for runner {runner!r}{hint}; expected one of: {', '.join(allowed)}"


def _load_environment(path: Path, i: int, raw: Any) -> Environment:
    where = f"environments[{i}]"
    t = _Table(path, where, raw, None)
    runner = t.get("runner", str, "local", choices=tuple(runner_names()))
    plugin = load_runner(runner)
    allowed = ENVIRONMENT_KEYS + tuple(o.name for o in plugin.options)
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise SpecError(path, t.key(unknown[0]), _unknown_key_message(runner, unknown[0], allowed))
    name = _check_name(path, t.key("name"), t.get("name", str))
    env = _check_env(path, t.key("env"), t.get("env", dict, {}))
    gpu = t.get("gpu", str, None)
    tpu = t.get("tpu", str, None)
    if gpu and tpu:
        raise SpecError(path, t.key("tpu"), "ask for a gpu or a tpu, not both")
    options = {o.name: t.get(o.name, o.kind, ... if o.required else o.default,
                             choices=o.choices) for o in plugin.options}
    for option, value in options.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise SpecError(path, t.key(option), f"must be a finite number, got {value}")
    params = _check_parameters(path, t.key("parameters"), t.get("parameters", dict, {}))
    backend = t.get("backend", str, "tensorflow", choices=BACKENDS)
    if env.get("KERAS_BACKEND", backend) != backend:
        raise SpecError(path, f"{t.key('env')}.KERAS_BACKEND",
                        f"{env['KERAS_BACKEND']!r} contradicts backend = {backend!r}; "
                        "set the backend with the `backend` key only")
    if tpu and backend == "torch":
        raise SpecError(path, t.key("backend"), "Keras's torch backend cannot use a TPU; "
                        "use tensorflow or jax")
    machine = t.get("machine", str, None)
    if machine is not None:
        _check_name(path, t.key("machine"), machine)
    required = t.get("require_device", (str, list), [])
    required = [required] if isinstance(required, str) else required
    if not all(isinstance(d, str) and d.strip() for d in required):
        raise SpecError(path, t.key("require_device"), f"a device name such as \"T4\" or a "
                        f"list of them, got {required!r}")
    environment = Environment(name=name, runner=runner, env=dict(env), gpu=gpu, tpu=tpu,
                              require_device=tuple(d.strip() for d in required),
                              kernel=t.get("kernel", str, None), parameters=params,
                              timeout_s=t.positive("timeout_s", float, None), options=options,
                              backend=backend, price=_load_price(path, t))
    environment = replace(environment, machine=machine or plugin.default_machine(environment))
    try:
        plugin.validate(environment)
    except OptionError as exc:
        raise SpecError(path, t.key(exc.key), str(exc)) from exc
    return environment


def _sweep_level(path: Path, key: str, value: Any) -> Any:
    """A level must survive the configuration id (study.record) and runs.csv unchanged."""
    if isinstance(value, bool | int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise SpecError(path, key, f"{value} is not a level; levels are finite numbers")
        if "+" in level_text(value):
            raise SpecError(path, key, f"{value!r} is written {level_text(value)} in run ids, "
                            "where '+' separates their parts; write it as an integer or a "
                            "name")
        return value
    if isinstance(value, str) and NAME_RE.match(value):
        return value
    raise SpecError(path, key, f"levels are numbers, booleans or names of letters, digits, "
                    f"'_', '.' and '-'; got {value!r}")


def _load_sweep(path: Path, raw: Any, known: set[str], parameters: dict[str, Any],
                environments: tuple[Environment, ...]) -> Sweep:
    t = _Table(path, "sweep", raw, None)
    levels: dict[str, tuple[Any, ...]] = {}
    for name, values in raw.items():
        if name == "exclude":
            continue
        key = f"sweep.{name}"
        _check_parameters(path, "sweep", {name: None})
        if name not in known:
            raise SpecError(path, key, f"not a parameter of the notebook; it defines: "
                            f"{', '.join(sorted(known))}")
        if name in RUNNER_FIELDS:
            raise SpecError(path, key, "a column of every record; rename the parameter")
        if not isinstance(values, list) or not values:
            raise SpecError(path, key, f"expected a non-empty list of levels, got {values!r}")
        checked = tuple(_sweep_level(path, f"{key}[{i}]", v) for i, v in enumerate(values))
        dup = next((v for v in checked if checked.count(v) > 1), None)
        if dup is not None:
            raise SpecError(path, key, f"the level {dup!r} is listed twice")
        if name in parameters:
            raise SpecError(path, f"protocol.parameters.{name}",
                            "swept in [sweep] as well; keep it in one place")
        for i, env in enumerate(environments):
            if name in env.parameters:
                raise SpecError(path, f"environments[{i}].parameters.{name}",
                                "swept in [sweep]: an environment's own value would replace "
                                "every level")
        levels[name] = checked
    rules = t.get("exclude", list, [])
    exclude = []
    for i, rule in enumerate(rules):
        where = f"sweep.exclude[{i}]"
        r = _Table(path, where, rule, tuple(levels))
        if not rule:
            raise SpecError(path, where, "an empty rule would exclude everything")
        for name, value in r.table.items():
            if value not in levels[name]:
                raise SpecError(path, f"{where}.{name}", f"{value!r} is not a level of "
                                f"{name} ({', '.join(map(repr, levels[name]))})")
        exclude.append(dict(rule))
    sweep = Sweep(parameters=levels, exclude=tuple(exclude))
    count = 1
    for values in levels.values():
        count *= len(values)
    if count > MAX_CONFIGURATIONS:
        raise SpecError(path, "sweep", f"{count} combinations; at most {MAX_CONFIGURATIONS}")
    if levels and not sweep.configurations():
        raise SpecError(path, "sweep.exclude", "excludes every combination")
    return sweep


def load_study(spec_path: str | Path, check_data: bool = True) -> Study:
    """Read and validate a study file. `check_data=False` skips opening the images."""
    path = Path(spec_path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise SpecError(path, "", "study file not found") from exc
    except (OSError, ValueError) as exc:  # a folder, no permission, a NUL, a name too long
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SpecError(path, "", f"cannot be read: {why}") from exc
    try:
        raw = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SpecError(path, "", f"not valid TOML: {exc}") from exc
    except RecursionError as exc:
        raise SpecError(path, "", "not valid TOML: arrays or tables nested too deep") from exc
    top = _Table(path, "", raw, ("study", "protocol", "datasets", "environments", "sweep",
                                 "analysis", "schedule"))
    try:
        schedule = parse_schedule(top.get("schedule", dict)) if "schedule" in raw else None
    except ScheduleError as exc:
        raise SpecError(path, f"schedule.{exc.key}", str(exc)) from exc

    s = _Table(path, "study", top.get("study", dict), (
        "name", "repetitions", "seed", "order", "hypothesis", "timeout_s", "retries", "warmup",
        "max_repetitions", "min_repetitions", "target_halfwidth", "description", "kernel"))
    name = _check_name(path, "study.name", s.get("name", str))
    repetitions = s.get("repetitions", (int, str), 10)
    if isinstance(repetitions, str) and repetitions != "auto":
        raise SpecError(path, "study.repetitions",
                        f"expected a number or \"auto\", got {repetitions!r}")
    if isinstance(repetitions, int) and not 1 <= repetitions <= MAX_REPETITIONS:
        raise SpecError(path, "study.repetitions",
                        f"must be from 1 to {MAX_REPETITIONS}, got {repetitions}")
    for key in ("max_repetitions", "min_repetitions"):
        value = s.get(key, int, None)
        if value is not None and value > MAX_REPETITIONS:
            raise SpecError(path, f"study.{key}", f"must be at most {MAX_REPETITIONS}, "
                            f"got {value}")
    if s.get("min_repetitions", int, 5) > s.get("max_repetitions", int, 30):
        raise SpecError(path, "study.min_repetitions", "must not exceed study.max_repetitions "
                        f"({s.get('min_repetitions', int, 5)} > "
                        f"{s.get('max_repetitions', int, 30)})")
    seed = s.get("seed", int, 200)
    most = repetitions if isinstance(repetitions, int) else s.get("max_repetitions", int, 30)
    if not 0 <= seed <= MAX_SEED - most:
        raise SpecError(path, "study.seed", f"must be from 0 to {MAX_SEED - most} (each "
                        f"repetition k uses seed + k - 1, and numpy takes seeds up to "
                        f"2**32 - 1), got {seed}")
    target = s.get("target_halfwidth", (int, float), 0.05)
    if not 0 < target < 1:
        raise SpecError(path, "study.target_halfwidth", f"a fraction such as 0.05, got {target}")

    p = _Table(path, "protocol", top.get("protocol", dict, {}),
               ("notebook", "parameters", "files", "keep_artifacts"))
    notebook = resolve_path(p.get("notebook", str, "protocols/cnn_train.ipynb"), path)
    parameters = _check_parameters(path, "protocol.parameters", p.get("parameters", dict, {}))
    try:
        keep_artifacts = parse_size(p.get("keep_artifacts", (str, int), DEFAULT_KEEP_ARTIFACTS))
    except ValueError as exc:
        raise SpecError(path, "protocol.keep_artifacts", str(exc)) from exc
    globs = p.get("files", list, None)
    if globs is not None and not all(isinstance(g, str) and g.strip() for g in globs):
        raise SpecError(path, "protocol.files", "expected a list of globs relative to the "
                        f"notebook's folder, such as [\"*.npz\", \"data/*.csv\"]; got {globs!r}")

    datasets = tuple(_load_dataset(path, i, d, check_data)
                     for i, d in enumerate(top.get("datasets", list, [])))
    environments = tuple(_load_environment(path, i, e)
                         for i, e in enumerate(top.get("environments", list)))
    protocol = read_protocol(path, notebook)
    if not datasets:
        if protocol.writes_record:
            raise SpecError(path, "datasets", f"at least one is needed: {notebook.name} loads "
                            "the dataset the study names")
        datasets = (own_data(notebook),)
    for what, items in (("datasets", datasets), ("environments", environments)):
        if not items:
            raise SpecError(path, what, "at least one is needed")
        names = [x.name for x in items]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup:
            raise SpecError(path, what, f"the name {dup!r} is used twice")
    files, left_out = _protocol_files(path, notebook, globs, check_data)
    known = set(protocol.parameters)
    for where, params in [("protocol.parameters", parameters)] + [
            (f"environments[{i}].parameters", e.parameters) for i, e in enumerate(environments)]:
        for pname in params:
            if not known:
                raise SpecError(path, f"{where}.{pname}", f"{notebook.name} has no cell tagged "
                                "'parameters' to take it: tag the cell that sets it")
            if pname not in known:
                raise SpecError(path, f"{where}.{pname}", f"not a parameter of {notebook.name}; "
                                f"it defines: {', '.join(sorted(known))}")
    sweep = _load_sweep(path, top.get("sweep", dict, {}), known, parameters, environments)
    _check_against_rules(path, protocol, [
        *((f"protocol.parameters.{k}", v) for k, v in parameters.items()),
        *((f"environments[{i}].parameters.{k}", v) for i, e in enumerate(environments)
          for k, v in e.parameters.items()),
        *((f"sweep.{k}[{j}]", v) for k, levels in sweep.parameters.items()
          for j, v in enumerate(levels))])
    _check_kernels(path, s, environments)

    a = _Table(path, "analysis", top.get("analysis", dict, {}),
               ("metrics", "alpha", "language", "procedure", "equivalence"))
    metrics = a.get("metrics", list, None)
    if metrics is not None and (not metrics or not all(isinstance(m, str) for m in metrics)):
        raise SpecError(path, "analysis.metrics", "expected a non-empty list of column names")
    for j, metric in enumerate(metrics or ()):
        known_metrics = _metrics_of(protocol)
        if known_metrics is not None and metric not in known_metrics:
            raise SpecError(path, f"analysis.metrics[{j}]", f"{metric!r} is not a column the "
                            f"runs of {notebook.name} will have; they have: "
                            f"{', '.join(sorted(known_metrics))}")
    alpha = a.get("alpha", float, 0.05)
    if not 0 < alpha < 1:
        raise SpecError(path, "analysis.alpha", f"must be between 0 and 1, got {alpha}")
    margin = a.get("equivalence", (int, float), None)
    if margin is not None and not 0 < margin < 1:
        raise SpecError(path, "analysis.equivalence", "a relative margin between 0 and 1 "
                        f"(0.05 is +-5 %), got {margin}")

    most = repetitions if isinstance(repetitions, int) else s.get("max_repetitions", int, 30)
    runs = len(datasets) * len(environments) * len(sweep.configurations()) * (
        most + s.get("warmup", int, 0))
    if runs > MAX_RUNS:
        raise SpecError(path, "study.repetitions", f"{runs} runs planned (datasets x "
                        f"environments x configurations x repetitions); at most {MAX_RUNS}")
    return Study(
        path=path.resolve(), name=name, repetitions=repetitions, seed=seed,
        order=s.get("order", str, "interleaved", choices=ORDERS),
        hypothesis=s.get("hypothesis", str, "two-sided", choices=HYPOTHESES),
        notebook=notebook, parameters=parameters, datasets=datasets, environments=environments,
        sweep=sweep,
        analysis=Analysis(metrics=tuple(metrics or ()), alpha=alpha,
                          language=a.get("language", str, "en", choices=LANGUAGES),
                          procedure=a.get("procedure", str, DEFAULT_PROCEDURE,
                                          choices=procedure_names()),
                          equivalence=None if margin is None else float(margin)),
        kernel=s.get("kernel", str, "python3"),
        timeout_s=s.positive("timeout_s", float, 1800.0),
        retries=s.positive("retries", int, 1, minimum=0),
        warmup=s.positive("warmup", int, 0, minimum=0),
        max_repetitions=s.positive("max_repetitions", int, 30, minimum=2),
        min_repetitions=s.positive("min_repetitions", int, 5, minimum=2),
        target_halfwidth=float(target), description=s.get("description", str, ""),
        files=files, files_left_out=left_out, keep_artifacts=keep_artifacts,
        schedule=schedule,
    )

