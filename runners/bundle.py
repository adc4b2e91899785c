"""The browser path to Colab: export an environment as one notebook, import what it brings back.

`study export colab SPEC --environment NAME -o bundle.ipynb` writes a notebook that carries
everything (the toolkit, the protocol notebook, folder datasets and the study, as one
base64 zip), asks Colab for the environment's accelerator in its metadata, runs the
environment's repetitions with the local runner inside the VM and packs an archive of the
records, executed notebooks and a manifest. `study import ARCHIVE` checks the archive
against the study file before anything is merged, so a stale, foreign or tampered archive
can never reach runs.csv.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

from cloudbench.data.atomic import atomic_path
from cloudbench.runners.staging import (
    ARCHIVE_DIRS,
    ARCHIVE_FORMAT,
    ARCHIVE_VERSION,
    EXPORT_FILE,
    UNPACK_SOURCE,
)
from cloudbench.study.imports import skip_slow_optional_imports
from cloudbench.study.manifest import build_manifest, toolkit_version
from cloudbench.study.plan import SEP, plan
from cloudbench.study.record import STATUSES, RecordError, RunRecord
from cloudbench.study.spec import (
    MAX_REPETITIONS,
    PROJECT_ROOT,
    Environment,
    SpecError,
    Study,
    load_study,
)
from cloudbench.study.store import ResultsStore, StoreError, default_results_dir

MAX_ARCHIVE_BYTES = 1 << 30  # a study's records and notebooks are far smaller
MAX_UNPACKED_BYTES = 4 << 30  # and no zip bomb gets past this
CHUNK = 1 << 20  # archive members are hashed and copied a megabyte at a time
PAYLOAD_LINE = 4096


class ArchiveError(StoreError):
    """An archive that is refused, with the reason; nothing has been merged."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------------------------


def colab_metadata(env: Environment) -> dict[str, Any]:
    """Notebook metadata that makes Colab offer the environment's accelerator on opening."""
    meta: dict[str, Any] = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"}, "colab": {"provenance": []}}
    if env.gpu:
        meta["accelerator"] = "GPU"
        meta["colab"]["gpuType"] = env.gpu.upper()
    elif env.tpu:
        meta["accelerator"] = "TPU"
        meta["colab"]["gpuType"] = env.tpu.upper()
    return meta


def export_manifest(study: Study, env: Environment, repetitions: int) -> dict[str, Any]:
    """What the archive will say about its origin; `study import` checks it."""
    version = toolkit_version()
    return {"format": ARCHIVE_FORMAT, "format_version": ARCHIVE_VERSION, "study": study.name,
            "study_file": study.path.name, "study_path": str(study.path),
            "study_sha256": study.file_sha256(), "environment": env.name,
            "runner": env.runner, "accelerator": env.accelerator, "gpu": env.gpu,
            "tpu": env.tpu, "notebook": study.notebook.name,
            "notebook_sha256": _sha256(study.notebook.read_bytes()),
            "parameters": study.parameters, "environment_parameters": env.parameters,
            "repetitions": repetitions, "toolkit_version": version,
            "exported_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}


def export_colab(study: Study, env_name: str, output: Path,
                 repetitions: int | None = None) -> Path:
    """Write the self-contained notebook for one environment; return its path."""
    # Imported here: nbformat's schema validator alone takes a second to import, and every
    # `study` command would pay for it.
    skip_slow_optional_imports()
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    from cloudbench.runners.vm import build_vm_stage

    env = study.environment(env_name)
    if env.runner != "colab":
        raise SpecError(study.path, f"environments[{study.environments.index(env)}].runner",
                        f"`study export colab` takes a colab environment; {env.name!r} has "
                        f"runner = {env.runner!r}")
    reps = repetitions or study.planned_repetitions
    manifest = export_manifest(study, env, reps)
    stage = build_vm_stage(study, {EXPORT_FILE: json.dumps(manifest, indent=1).encode()})
    payload = base64.b64encode(stage.zip_bytes()).decode("ascii")
    lines = "\n".join(f'    "{payload[i:i + PAYLOAD_LINE]}"'
                      for i in range(0, len(payload), PAYLOAD_LINE))
    device = (f"a {env.gpu.upper()} GPU" if env.gpu else f"a {env.tpu} TPU" if env.tpu
              else "a CPU runtime")
    nb = new_notebook(metadata=colab_metadata(env))
    nb.cells = [
        new_markdown_cell(
            f"# Study `{study.name}`: environment `{env.name}` on Colab\n\n"
            f"This notebook runs the `{env.name}` repetitions of the study ({reps} per "
            f"dataset) with the same protocol notebook and toolkit as every other "
            f"environment; it asks Colab for {device}.\n\n"
            "1. *Runtime > Run all*. Nothing else is needed: the toolkit, the protocol and the "
            "datasets are embedded below; only papermill is installed if missing.\n"
            "2. At the end the archive of the runs is downloaded (or saved to Google Drive "
            "with `save_to_drive = True`).\n"
            f"3. At home: `study import <archive>.zip` checks it and merges it into "
            f"`data/results/{study.name}/`.\n\n"
            "Running it again resumes: repetitions already done in `results_dir` are kept."),
        new_code_cell(
            "# Parameters\n"
            f"repetitions = {reps}                  # per dataset\n"
            'results_dir = "cloudbench-results"  # records and executed notebooks in the VM\n'
            'archive_dir = "."                   # where the archive is written\n'
            "save_to_drive = False               # True: copy the archive to My Drive",
            metadata={"tags": ["parameters"]}),
        new_code_cell(
            "# The toolkit, protocol notebook, datasets and study (a zip, base64)\n"
            f"STAGE_VERSION = {stage.version!r}\n"
            f"STAGE_SHA256 = {_sha256(stage.zip_bytes())!r}\n"
            f"ENVIRONMENT = {env.name!r}\n"
            f"PAYLOAD = (\n{lines}\n)"),
        new_code_cell(
            "# Unpack the toolkit (once per version) and install what the VM lacks\n"
            "import base64, hashlib, importlib.util, os, subprocess, sys\n"
            f"{UNPACK_SOURCE.strip()}\n\n"
            "_data = base64.b64decode(PAYLOAD)\n"
            "assert hashlib.sha256(_data).hexdigest() == STAGE_SHA256, 'damaged payload'\n"
            'os.makedirs("cloudbench", exist_ok=True)\n'
            '_zip = os.path.join("cloudbench", "cloudbench-" + STAGE_VERSION + ".zip")\n'
            'with open(_zip, "wb") as _fh:\n'
            "    _fh.write(_data)\n"
            'root = _cloudbench_unpack(_zip, os.path.join("cloudbench", STAGE_VERSION))\n'
            "if root not in sys.path:\n"
            "    sys.path.insert(0, root)\n"
            '_missing = [m for m in ("papermill",) if importlib.util.find_spec(m) is None]\n'
            "if _missing:\n"
            '    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", *_missing])\n'
            'print("toolkit", STAGE_VERSION, "in", root)'),
        new_code_cell(
            "# Run the repetitions: a fresh kernel each, through papermill, as on any machine\n"
            "from cloudbench.runners.vm import run_environment\n\n"
            "archive_path = run_environment(root, ENVIRONMENT, repetitions, results_dir, "
            "archive_dir)"),
        new_code_cell(
            "# Bring the archive home\n"
            "import shutil\n\n"
            "try:\n"
            "    from google.colab import files\n"
            "except ImportError:  # not on Colab: the archive stays here\n"
            '    print("archive written to", os.path.abspath(archive_path))\n'
            "else:\n"
            "    if save_to_drive:\n"
            "        from google.colab import drive\n\n"
            '        drive.mount("/content/drive")\n'
            '        print("saved to", shutil.copy(archive_path, "/content/drive/MyDrive/"))\n'
            "    else:\n"
            "        files.download(archive_path)"),
    ]
    output.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, output)
    return output


# --------------------------------------------------------------------------------------------
# import
# --------------------------------------------------------------------------------------------




#: The runners whose environments are exported as a bundle, so whose runs come back in an
#: archive; a local environment's runs are made here, never imported.
EXPORTED_RUNNERS = ("colab", "kaggle")
MAX_MANIFEST_BYTES = 64 << 20  # 20,000 runs' hashes are about 3 MB
MAX_RECORD_BYTES = 16 << 20  # a record is about a kilobyte
#: What a damaged or hostile zip raises while a member is read: a bad CRC or deflate
#: stream, a truncated member, an unsupported compression method, an encrypted member.
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError,
               ValueError, OSError, struct.error)
#: Each folder's file names: the run id, then what the store names its files by
#: (study.layout); an attempt carries its number. Nothing else is the store's own.
_MEMBER_NAMES = {
    "records": re.compile(r"(?P<rid>[^/]+)\.json"),
    "notebooks": re.compile(r"(?P<rid>[^/]+)\.ipynb"),
    "logs": re.compile(r"(?P<rid>[^/]+)\.log"),
    "attempts": re.compile(r"(?P<rid>[^/]+)\.(?P<attempt>[1-9][0-9]{0,5})\.json"),
}


def _unsafe(name: str) -> bool:
    path = PurePosixPath(name.replace("\\", "/"))
    return name.startswith(("/", "\\")) or ".." in path.parts or ":" in name


def member_run_id(name: str) -> str | None:
    """The run id a member's name gives ("attempts/<run id>.<n>.json"), None for a name
    that is not one the store itself would write."""
    folder, _, file = name.partition("/")
    pattern = _MEMBER_NAMES.get(folder)
    match = pattern.fullmatch(file) if pattern else None
    return match["rid"] if match else None


@dataclass(frozen=True)
class Member:
    """One file of an archive, read from the archive's one open zip when needed and in
    chunks: a notebook or a log of hundreds of MB is hashed and copied without being held
    in memory whole. A damaged member (bad CRC, truncated) is an ArchiveError naming it."""

    archive: Path
    name: str
    zf: zipfile.ZipFile | None = field(default=None, compare=False, repr=False)

    @contextmanager
    def _open(self) -> Iterator[IO[bytes]]:
        try:
            if self.zf is not None:
                with self.zf.open(self.name) as fh:
                    yield fh
            else:
                with zipfile.ZipFile(self.archive) as zf, zf.open(self.name) as fh:
                    yield fh
        except _ZIP_ERRORS as exc:
            raise ArchiveError(f"{self.archive}: refused: {self.name} cannot be read from the "
                               f"archive ({type(exc).__name__}: {exc})") from None

    def read(self, limit: int | None = None) -> bytes:
        """The member's bytes; more than `limit` of them is refused."""
        with self._open() as fh:
            data = fh.read(-1 if limit is None else limit + 1)
        if limit is not None and len(data) > limit:
            raise ArchiveError(f"{self.archive}: refused: {self.name} is over {limit} bytes")
        return data

    def chunks(self) -> Iterator[bytes]:
        with self._open() as fh:
            while chunk := fh.read(CHUNK):
                yield chunk

    def sha256(self) -> str:
        digest = hashlib.sha256()
        for chunk in self.chunks():
            digest.update(chunk)
        return digest.hexdigest()

    def copy_to(self, dest: Path) -> None:
        """Write it to dest atomically, unless dest already holds the same bytes."""
        if dest.exists() and _file_sha256(dest) == self.sha256():
            return
        with atomic_path(dest) as tmp, open(tmp, "wb") as out:
            for chunk in self.chunks():
                out.write(chunk)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def open_archive(path: Path) -> Iterator[tuple[dict[str, Any], dict[str, Member]]]:
    """The manifest and files of an archive, its zip opened once (opening it per member
    reads the whole central directory each time: quadratic in the runs). Anything that
    could escape or explode is refused."""
    if not path.is_file():
        raise ArchiveError(f"{path}: archive not found")
    if path.stat().st_size > MAX_ARCHIVE_BYTES:
        raise ArchiveError(f"{path}: {path.stat().st_size} bytes is over the size limit of "
                           f"{MAX_ARCHIVE_BYTES} bytes")
    try:
        zf = zipfile.ZipFile(path)
    except _ZIP_ERRORS as exc:
        raise ArchiveError(f"{path}: not a zip archive ({exc})") from exc
    with zf:
        infos = zf.infolist()
        unpacked = sum(i.file_size for i in infos)
        if unpacked > MAX_UNPACKED_BYTES:
            raise ArchiveError(f"{path}: {unpacked} bytes unpacked is over the size limit "
                               f"of {MAX_UNPACKED_BYTES} bytes")
        files: dict[str, Member] = {}
        manifest_bytes = b""
        for info in infos:
            name = info.filename
            if _unsafe(name):
                raise ArchiveError(f"{path}: unsafe path {name!r} (absolute or '..')")
            if info.is_dir():
                continue
            parts = name.split("/")
            if name != "manifest.json" and (len(parts) != 2 or parts[0] not in ARCHIVE_DIRS):
                raise ArchiveError(f"{path}: unexpected file {name!r}; an archive holds "
                                   f"manifest.json and {', '.join(ARCHIVE_DIRS)}/")
            if name in files or (name == "manifest.json" and manifest_bytes):
                raise ArchiveError(f"{path}: {name!r} appears twice")
            if name == "manifest.json":
                manifest_bytes = Member(path, name, zf).read(MAX_MANIFEST_BYTES) or b" "
            else:
                files[name] = Member(path, name, zf)
        if not manifest_bytes:
            raise ArchiveError(f"{path}: no manifest.json; not an archive of "
                               "`study export colab`")
        try:
            manifest = json.loads(manifest_bytes)
        except (ValueError, RecursionError) as exc:
            reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            raise ArchiveError(f"{path}: manifest.json is not valid JSON: {reason}") from None
        if not isinstance(manifest, dict):
            raise ArchiveError(f"{path}: manifest.json is not an object")
        yield manifest, files


def read_archive(path: Path) -> tuple[dict[str, Any], dict[str, Member]]:
    """The manifest and files of an archive (each member opens the zip when read)."""
    with open_archive(path) as (manifest, files):
        return manifest, {name: Member(path, name) for name in files}


def find_spec(manifest: dict[str, Any], spec: Path | None) -> Path:
    """The study file: --spec, else where the manifest says it was exported from."""
    if spec is not None:
        return spec
    named = Path(str(manifest.get("study_file", "")))
    candidates = [Path(str(manifest.get("study_path", ""))), named, PROJECT_ROOT / "study" / named]
    for candidate in candidates:
        # Only a study file by the name the archive gives: a manifest must never make the
        # import open another file of this machine.
        try:
            if (candidate.name and candidate.name == named.name and candidate.suffix == ".toml"
                    and candidate.is_file()):
                return candidate
        except (OSError, ValueError):  # a name too long for this system, a NUL in it
            continue
    raise ArchiveError(f"cannot find the study file {str(manifest.get('study_file'))[:200]!r} "
                       "that the archive was exported from; pass it with --spec")


Refuse = Callable[[str], ArchiveError]


def _shown(value: Any) -> str:
    """A value from the archive as a message shows it: its repr, at most 100 characters."""
    text = repr(value)
    return text if len(text) <= 100 else text[:97] + "..."


def _parse_record(data: bytes, name: str, refuse: Refuse) -> Any:
    """A record member's JSON; deep nesting is refused, not a RecursionError."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise refuse(f"{name} is not valid JSON: {reason}") from None


def _checked_record(raw: Any, name: str, refuse: Refuse) -> RunRecord:
    try:
        return RunRecord(raw)
    except RecordError as exc:
        raise refuse(f"{name}: {exc}") from None
    except RecursionError:
        raise refuse(f"{name}: nested too deeply to be a run record") from None


@dataclass
class Checked:
    """What an archive that passed every rule brings: its records' member names in order,
    and each run's other members. Only names are held, never a record: the records are
    read again, one at a time, when they are merged."""

    records: list[str]
    others: dict[str, list[str]]


def validate(path: Path, manifest: dict[str, Any], files: dict[str, Member], study: Study,
             store: ResultsStore) -> Checked:
    """Every rule an archive must pass before a byte of it is merged (each record checked
    as any record is when it is built: study.record.RunRecord), in one pass over the
    members, each looked up in sets: the time grows with the archive, not its square."""
    def refuse(reason: str) -> ArchiveError:
        return ArchiveError(f"{path}: refused: {reason}")

    if manifest.get("format") != ARCHIVE_FORMAT:
        raise refuse(f"format {_shown(manifest.get('format'))} is not {ARCHIVE_FORMAT!r}")
    if manifest.get("format_version") != ARCHIVE_VERSION:
        raise refuse(f"format version {_shown(manifest.get('format_version'))} is not "
                     f"supported; this toolkit reads version {ARCHIVE_VERSION}")
    if manifest.get("study") != study.name:
        raise refuse(f"it holds runs of study {_shown(manifest.get('study'))}, not of "
                     f"{study.name!r}")
    notebook_sha = _sha256(study.notebook.read_bytes())
    if manifest.get("notebook_sha256") != notebook_sha:
        raise refuse(f"its protocol notebook differs from {study.notebook} "
                     f"(sha256 {str(manifest.get('notebook_sha256'))[:12]}... in the archive, "
                     f"{notebook_sha[:12]}... here)")
    if manifest.get("parameters") != study.parameters:
        raise refuse(f"its protocol parameters {json.dumps(manifest.get('parameters'))[:300]} "
                     f"differ from the study file's {json.dumps(study.parameters)}")
    try:
        env = study.environment(str(manifest.get("environment"))[:200])
    except SpecError as exc:
        raise refuse(str(exc)) from exc
    if env.runner not in EXPORTED_RUNNERS or manifest.get("runner", env.runner) != env.runner:
        raise refuse(f"it names environment {env.name!r}, whose runner is {env.runner!r}: an "
                     f"archive holds the runs of the {'/'.join(EXPORTED_RUNNERS)} environment "
                     f"its bundle was exported for, never a {env.runner} one")
    if manifest.get("environment_parameters", {}) != env.parameters:
        raise refuse(f"the parameters of environment {env.name!r} differ from the study file's")
    hashes = manifest.get("files")
    if not isinstance(hashes, dict) or set(hashes) != set(files):
        raise refuse("its files do not match the list in its manifest")
    datasets = {d.name for d in study.datasets}
    planned = {j.run_id: (j.block, j.repetition, j.configuration)  # small: 20,000 of them
               for j in plan(study, _planned_repetitions(manifest, study))
               if j.environment == env.name}
    names = sorted(files)
    records = [n for n in names if n.startswith("records/")]
    others: dict[str, list[str]] = {}
    for name in names:  # names first: a name the store would not write is never read
        rid = member_run_id(name)
        if rid is None:
            raise refuse(f"{name} is not a file name of a results folder (records/<run "
                         "id>.json, attempts/<run id>.<attempt>.json, notebooks/<run "
                         "id>.ipynb, logs/<run id>.log)")
        if not name.startswith("records/"):
            others.setdefault(rid, []).append(name)
    seen: set[str] = set()
    for name in records:
        member = files[name]
        data = member.read(MAX_RECORD_BYTES)
        if hashes[name] != _sha256(data):
            raise refuse(f"{name} was changed after packing (its sha256 does not match)")
        raw = _parse_record(data, name, refuse)
        if not isinstance(raw, dict):
            raise refuse(f"{name} is not a run record")
        rid = str(raw.get("run_id"))[:200]
        if rid in seen:
            raise refuse(f"run id {rid!r} appears more than once")
        seen.add(rid)
        parts = rid.split(SEP)
        if name != f"records/{rid}.json":
            raise refuse(f"{name} holds the record of {rid!r}")
        if (raw.get("study") != study.name or raw.get("environment") != env.name
                or len(parts) not in (3, 4) or parts[0] != env.name or parts[1] not in datasets
                or raw.get("dataset") != parts[1]):
            raise refuse(f"{name} is not a run of environment {env.name!r} of this study")
        if raw.get("status") not in STATUSES:
            raise refuse(f"{name} has status {_shown(raw.get('status'))}")
        record = _checked_record(raw, name, refuse)
        job = planned.get(record["run_id"])
        if job is None:
            raise refuse(f"{name}: {record['run_id']!r} is not a planned run of environment "
                         f"{env.name!r}")
        if (record["block"], record["repetition"], record.get("configuration") or "") != job:
            raise refuse(f"{name}: its block, repetition or configuration contradict its run "
                         f"id (planned: block {job[0]}, repetition {job[1]})")
    for rid, members in others.items():
        for name in members:
            if f"records/{rid}.json" not in files:
                raise refuse(f"{name} belongs to no run in the archive")
            if hashes[name] != files[name].sha256():
                raise refuse(f"{name} was changed after packing (its sha256 does not match)")
    old = store.read_manifest()
    if old is not None and store.has_records():
        for key in ("notebook_sha256", "parameters"):
            if key in old and old[key] != manifest.get(key):
                raise refuse(f"the runs already in {store.root} have another {key}")
    return Checked(records, others)


def _planned_repetitions(manifest: dict[str, Any], study: Study) -> int:
    """The repetitions the archive was exported for (its manifest), within the study's bound."""
    value = manifest.get("repetitions")
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_REPETITIONS:
        return value
    return study.max_repetitions if study.repetitions == "auto" else study.planned_repetitions


def import_archive(path: Path, output: Path | None = None, spec: Path | None = None
                   ) -> dict[str, list[str]]:
    """Check, then merge; rebuild runs.csv. Importing the same archive again changes nothing.

    Two passes over the archive's one open zip: every rule first (nothing is merged from
    an archive that breaks one), then each record read again and merged, so memory holds
    names, never the records; the store's table is appended to, not rebuilt, per record."""
    with open_archive(path) as (manifest, files):
        study = load_study(find_spec(manifest, spec), check_data=False)
        store = ResultsStore(output or default_results_dir(study.name))
        checked = validate(path, manifest, files, study, store)
        outcome: dict[str, list[str]] = {"added": [], "unchanged": [], "kept": []}
        store.prepare()
        with store.batch():
            _merge(checked, files, store, outcome)
        if store.read_manifest() is None:
            store.write_manifest(build_manifest(study))
        if not store.csv_path.exists():  # else each added record has updated it
            store.write_csv()
    return outcome


def _merge(checked: Checked, files: dict[str, Member], store: ResultsStore,
           outcome: dict[str, list[str]]) -> None:
    """Each checked record read again and merged, with its run's other files."""
    for name in checked.records:
        record = json.loads(files[name].read(MAX_RECORD_BYTES))  # checked by validate
        rid = record["run_id"]
        old = store.read_record(rid)
        if old is not None:
            if old == record:
                outcome["unchanged"].append(rid)
                continue
            if old.get("status") == "ok":  # a completed run is never replaced
                outcome["kept"].append(rid)
                continue
        for member in checked.others.get(rid, ()):
            folder, file = member.split("/")
            files[member].copy_to(store.root / folder / file)
        store.write_record(record)
        outcome["added"].append(rid)
