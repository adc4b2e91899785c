"""Stand-in for kaggle.api.kaggle_api_extended (kaggle 2.2.5): the calls a runner makes.

Each method keeps the real one's name, signature, validations (their ValueError messages word
for word), return types' attribute names and errors (requests' HTTPError with a response,
the ValueError that kernels_status/kernels_output raise for 401/403); the server is the state
folder of kaggle/_standin.py. Credentials are looked up as the real client does
(authenticate(): access token, then kaggle.json or KAGGLE_USERNAME/KAGGLE_KEY, else
print_auth_help() and exit(1)); OAuth credentials (`kaggle auth login`) are not imitated.
"""

from __future__ import annotations

import enum
import json
import os
import re
import shutil
import sys
from os.path import expanduser
from pathlib import Path
from typing import Any

import requests
from requests.exceptions import HTTPError

from kaggle import _standin

API_BASE = "https://api.kaggle.com/v1"


class KernelWorkerStatus(enum.Enum):
    """kagglesdk.kernels.types.kernels_enums.KernelWorkerStatus."""

    QUEUED = 0
    RUNNING = 1
    COMPLETE = 2
    ERROR = 3
    CANCEL_REQUESTED = 4
    CANCEL_ACKNOWLEDGED = 5
    NEW_SCRIPT = 6


class _Response:
    """kagglesdk's response objects: snake_case properties with camelCase aliases."""

    _aliases: dict[str, str] = {}

    def __getattr__(self, name: str) -> Any:
        if name in self._aliases:
            return getattr(self, self._aliases[name])
        raise AttributeError(name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.__dict__})"


class ApiSaveKernelResponse(_Response):
    _aliases = {"versionNumber": "version_number", "invalidTags": "invalid_tags",
                "invalidDatasetSources": "invalid_dataset_sources",
                "invalidCompetitionSources": "invalid_competition_sources",
                "invalidKernelSources": "invalid_kernel_sources",
                "invalidModelSources": "invalid_model_sources", "kernelId": "kernel_id"}

    def __init__(self) -> None:
        self.ref = ""
        self.url = ""
        self.version_number: int | None = None
        self.error: str | None = None
        self.invalid_tags: list[str] = []
        self.invalid_dataset_sources: list[str] = []
        self.invalid_competition_sources: list[str] = []
        self.invalid_kernel_sources: list[str] = []
        self.invalid_model_sources: list[str] = []
        self.kernel_id = 0


class ApiGetKernelSessionStatusResponse(_Response):
    _aliases = {"failureMessage": "failure_message"}

    def __init__(self, status: KernelWorkerStatus = KernelWorkerStatus.QUEUED,
                 failure_message: str = "") -> None:
        self.status = status
        self.failure_message = failure_message or ""


class ApiCreateDatasetResponse(_Response):
    _aliases = {"invalidTags": "invalid_tags"}

    def __init__(self) -> None:
        self.ref = ""
        self.url = ""
        self.status: str | None = None
        self.error: str | None = None
        self.invalid_tags: list[str] = []


class ApiGetAcceleratorQuotaStatisticsResponse(_Response):
    _aliases = {"quotaRefreshTime": "quota_refresh_time", "gpuQuota": "gpu_quota",
                "tpuQuota": "tpu_quota"}

    def __init__(self, quota: dict[str, Any]) -> None:
        self.quota_refresh_time = quota.get("quota_refresh_time")
        self.gpu_quota = quota.get("gpu_quota")
        self.tpu_quota = quota.get("tpu_quota")


def _http_error(status: int, reason: str, service: str, headers: dict[str, str] | None = None,
                message: str | None = None) -> HTTPError:
    """An HTTPError as requests' raise_for_status() makes it (kagglesdk's _prepare_response)."""
    response = requests.Response()
    response.status_code = status
    response.reason = reason
    response.url = f"{API_BASE}/{service}"
    response.headers.update(headers or {})
    kind = "Client" if status < 500 else "Server"
    text = message or f"{status} {kind} Error: {reason} for url: {response.url}"
    return HTTPError(text, response=response)


def print_auth_help() -> None:
    """Print friendly instructions for setting up Kaggle authentication."""
    print(
        "Authentication required to call the Kaggle API.\n"
        "\n"
        "First, you will need a Kaggle account. You can sign up at\n"
        "  https://www.kaggle.com/account/login\n"
        "\n"
        "Recommended: log in with OAuth via a web-based authorization flow.\n"
        "No token to manage; credentials are cached locally for you.\n"
        "    kaggle auth login\n"
        "\n"
        "If you'd rather not use OAuth, generate an API token at\n"
        '  https://www.kaggle.com/settings/api  (click "Generate New Token" under "API")\n'
        "and supply it to the CLI in one of these ways:\n"
        "\n"
        "  Option A: Environment variable\n"
        "    export KAGGLE_API_TOKEN=xxxxxxxxxxxxxx  # token copied from the settings UI\n"
        "\n"
        "  Option B: API token file\n"
        "    Save the token to ~/.kaggle/access_token"
    )


def get_access_token_from_env() -> tuple[str | None, str | None]:
    """kagglesdk.kaggle_env.get_access_token_from_env (without the in-notebook case)."""
    token = os.environ.get("KAGGLE_API_TOKEN")
    if token:
        if Path(token).exists():
            return Path(token).read_text().strip(), "KAGGLE_API_TOKEN"
        return token, "KAGGLE_API_TOKEN"
    for name in ("~/.kaggle/access_token", "~/.kaggle/access_token.txt"):
        path = Path(expanduser(name))
        if path.is_file() and path.read_text().strip():
            return path.read_text().strip(), "access_token"
    return None, None


class KaggleApi:
    """The calls of kaggle.api.kaggle_api_extended.KaggleApi that a runner makes."""

    CONFIG_NAME_USER = "username"
    CONFIG_NAME_AUTH_METHOD = "auth_method"
    CONFIG_NAME_KEY = "key"
    CONFIG_NAME_TOKEN = "token"
    KERNEL_METADATA_FILE = "kernel-metadata.json"
    DATASET_METADATA_FILE = "dataset-metadata.json"
    OLD_DATASET_METADATA_FILE = "datapackage.json"

    # As in the real class body: decided (and created) when the module is imported.
    config_dir: str = os.environ.get("KAGGLE_CONFIG_DIR") or ""
    if not config_dir:
        config_dir = os.path.join(expanduser("~"), ".kaggle")
        if sys.platform.startswith("linux") and not os.path.exists(config_dir):
            config_dir = os.path.join(
                (os.environ.get("XDG_CONFIG_HOME") or os.path.join(expanduser("~"), ".config")),
                "kaggle")
    if not os.path.exists(config_dir):
        os.makedirs(config_dir)
    config_file = "kaggle.json"
    config = os.path.join(config_dir, config_file)
    config_values: dict[str, str] = {}
    _authenticated = False

    valid_push_kernel_types = ["script", "notebook"]
    valid_push_language_types = ["python", "r", "rmarkdown"]

    # -- authentication ----------------------------------------------------------------------

    def _load_config(self) -> None:
        self.config_values = self.read_config_environment(self.read_config_file(quiet=True))

    def read_config_file(self, config_data: dict[str, str] | None = None,
                         quiet: bool = False) -> dict[str, str]:
        if config_data is None:
            config_data = {}
        if os.path.exists(self.config):
            try:
                permissions = os.stat(self.config).st_mode
                if (permissions & 4) or (permissions & 32):
                    print("Warning: Your Kaggle API key is readable by other users on this "
                          "system! To fix this, you can run " + f"'chmod 600 {self.config}'")
                with open(self.config) as f:
                    config_data = json.load(f) or {}
            except Exception:  # noqa: BLE001 - the real client swallows every error here
                pass
        elif not quiet:
            print("No Kaggle API config file found, will use environment.")
        return config_data

    def read_config_environment(self, config_data: dict[str, str] | None = None
                                ) -> dict[str, str]:
        if config_data is None:
            config_data = {}
        for key, val in os.environ.items():
            if key.startswith("KAGGLE_"):
                config_data[key.replace("KAGGLE_", "", 1).lower()] = val
        return config_data

    def authenticate(self) -> None:
        """Access token, then legacy key (kaggle.json / KAGGLE_USERNAME+KAGGLE_KEY), else the
        help text on stdout and exit(1) (SystemExit), as the real client does."""
        self._load_config()
        if self._authenticate_with_access_token() or self._authenticate_with_legacy_apikey():
            self._authenticated = True
            return
        print_auth_help()
        exit(1)

    def _authenticate_with_legacy_apikey(self) -> bool:
        if self.CONFIG_NAME_USER in self.config_values and \
                self.CONFIG_NAME_KEY in self.config_values:
            self.config_values[self.CONFIG_NAME_AUTH_METHOD] = "LEGACY_API_KEY"
            return True
        return False

    def _authenticate_with_access_token(self) -> bool:
        token, _source = get_access_token_from_env()
        if not token:
            return False
        state = os.environ.get(_standin.STATE_ENV)
        values = _standin.control(Path(state)) if state else {}
        if values.get("invalid_token"):
            return False  # the real client ignores a token that introspection rejects
        self.config_values[self.CONFIG_NAME_TOKEN] = token
        self.config_values[self.CONFIG_NAME_USER] = values.get("user", "standin")
        self.config_values[self.CONFIG_NAME_AUTH_METHOD] = "ACCESS_TOKEN"
        return True

    def get_config_value(self, name: str) -> str | None:
        return self.config_values.get(name)

    # -- the "server" ------------------------------------------------------------------------

    def _server(self, call: str, service: str, **args: Any) -> Path:
        """Every request: logged, then the scripted 429, then 401 without credentials."""
        state = _standin.state_dir()
        _standin.log_call(state, call, **args)
        if _standin.take(state, "rate_limit"):
            retry_after = _standin.control(state).get("retry_after")
            raise _http_error(429, "Too Many Requests", service,
                              {"Retry-After": str(retry_after)} if retry_after else None)
        if not (self.CONFIG_NAME_TOKEN in self.config_values or (
                self.CONFIG_NAME_USER in self.config_values
                and self.CONFIG_NAME_KEY in self.config_values)):
            raise _http_error(401, "Unauthorized", service)
        return state

    @staticmethod
    def get_or_default(data: dict[str, Any], key: str, default: Any) -> Any:
        return data[key] if key in data else default

    @staticmethod
    def get_bool(data: dict[str, Any], key: str, default: bool) -> bool:
        if key not in data:
            return default
        value = data[key]
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            if value.lower() == "true":
                return True
            if value.lower() == "false":
                return False
        raise ValueError(f"Invalid boolean value for {key}: {value}")

    # -- kernels -------------------------------------------------------------------------

    def validate_kernel_string(self, kernel: str | None) -> None:
        if kernel:
            form = ("Kernel must be specified in the form of "
                    "'{username}/{kernel-slug}' or '{username}/{kernel-slug}/{version}'")
            if "/" not in kernel:
                raise ValueError(form)
            split = kernel.split("/")
            if len(split) > 3 or not split[0] or not split[1]:
                raise ValueError(form)
            if len(split[1]) < 5:
                raise ValueError("Kernel slug must be at least five characters")
            if len(split) == 3 and not split[2]:
                raise ValueError("Kernel version cannot be empty if specified")

    def parse_kernel_string(self, kernel: str) -> tuple[str, str, str | None]:
        if not kernel:
            raise ValueError("A kernel must be specified")
        if "/" in kernel:
            self.validate_kernel_string(kernel)
            parts = kernel.split("/")
            return parts[0], parts[1], parts[2] if len(parts) > 2 else None
        return self.get_config_value(self.CONFIG_NAME_USER) or "", kernel, None

    def kernels_push(self, folder: str, timeout: str | None = None, acc: str | None = None,
                     no_run: bool = False) -> ApiSaveKernelResponse:
        """Validates as the real one does; saves a version and starts it (unless no_run)."""
        if not os.path.isdir(folder):
            raise ValueError("Invalid folder: " + folder)
        meta_file = os.path.join(folder, self.KERNEL_METADATA_FILE)
        if not os.path.isfile(meta_file):
            raise ValueError("Metadata file not found: " + str(meta_file))
        with open(meta_file, encoding="utf-8") as f:
            meta_data = json.load(f)
        title = self.get_or_default(meta_data, "title", None)
        if title and len(title) < 5:
            raise ValueError("Title must be at least five characters")
        code_path = self.get_or_default(meta_data, "code_file", "")
        if not code_path:
            raise ValueError("A source file must be specified in the metadata")
        code_file = os.path.join(folder, code_path)
        if not os.path.isfile(code_file):
            raise ValueError("Source file not found: " + str(code_file))
        slug = meta_data.get("id")
        if not slug and not meta_data.get("id_no"):
            raise ValueError("ID or slug must be specified in the metadata")
        if not slug:
            raise NotImplementedError("the stand-in knows kernels by slug only, not id_no")
        owner, kernel_slug, version = self.parse_kernel_string(slug)
        if version is not None:
            raise ValueError("Kernel metadata 'id' (slug) cannot contain a version")
        language = self.get_or_default(meta_data, "language", "")
        if language not in self.valid_push_language_types:
            raise ValueError("A valid language must be specified in the metadata. Valid "
                             "options are " + str(self.valid_push_language_types))
        kernel_type = self.get_or_default(meta_data, "kernel_type", "")
        if kernel_type not in self.valid_push_kernel_types:
            raise ValueError("A valid kernel type must be specified in the metadata. Valid "
                             "options are " + str(self.valid_push_kernel_types))
        if kernel_type != "notebook" or language != "python":
            raise NotImplementedError("the stand-in runs python notebooks only")
        dataset_sources = list(self.get_or_default(meta_data, "dataset_sources", []))
        for source in dataset_sources:
            self.validate_dataset_string(source)
        with open(code_file, encoding="utf-8") as f:
            body = json.load(f)
        for cell in body.get("cells", []):
            if "outputs" in cell and cell["cell_type"] == "code":
                cell["outputs"] = []

        state = self._server("kernels_push", "kernels.KernelsApiService/SaveKernel",
                             folder=folder, timeout=timeout, acc=acc, no_run=no_run,
                             slug=slug, metadata=meta_data)
        response = ApiSaveKernelResponse()
        error = _standin.take(state, "push_error")
        if error:
            response.error = str(error)
            return response
        kernel_dir = state / "kernels" / owner / kernel_slug
        number = (_standin.versions(kernel_dir) or [0])[-1] + 1
        version_dir = kernel_dir / str(number)
        working = version_dir / "kaggle" / "working"
        working.mkdir(parents=True)
        inputs = version_dir / "kaggle" / "input"
        inputs.mkdir()
        for source in dataset_sources:
            d_owner, d_slug = source.split("/")[:2]
            d_dir = state / "datasets" / d_owner / d_slug
            if not _standin.versions(d_dir):
                response.invalid_dataset_sources.append(source)
                continue
            files = d_dir / str(_standin.versions(d_dir)[-1]) / "files"
            shutil.copytree(files, inputs / d_slug)
        (version_dir / "source.ipynb").write_text(json.dumps(body))
        control = _standin.control(state)
        run_meta = {**meta_data, "version": number, "no_run": no_run,
                    "machine_shape": acc or meta_data.get("machine_shape"),
                    "session_timeout_seconds": int(timeout) if timeout else None,
                    "queue_s": float(control.get("queue_s", 0.2)),
                    "queued_then_error": _standin.take(state, "queued_then_error")}
        _standin.write_json(version_dir / "meta.json", run_meta)
        response.ref = f"/code/{owner}/{kernel_slug}"
        response.url = f"https://www.kaggle.com/code/{owner}/{kernel_slug}"
        response.version_number = number
        if no_run:
            _standin.set_status(version_dir, "COMPLETE")
        else:
            _standin.set_status(version_dir, "QUEUED")
            _standin.start_worker(version_dir)
        return response

    def _version_dir(self, state: Path, kernel: str, service: str) -> Path:
        owner, slug, version = self.parse_kernel_string(kernel)
        kernel_dir = state / "kernels" / owner / slug
        numbers = _standin.versions(kernel_dir)
        number = int(version.lstrip("v")) if version else (numbers[-1] if numbers else None)
        if number not in numbers:
            raise _http_error(404, "Not Found", service)
        return kernel_dir / str(number)

    def kernels_status(self, kernel: str) -> ApiGetKernelSessionStatusResponse:
        if kernel is None:
            raise ValueError("A kernel must be specified")
        service = "kernels.KernelsApiService/GetKernelSessionStatus"
        try:
            state = self._server("kernels_status", service, kernel=kernel)
        except HTTPError as e:
            if e.response.status_code in (401, 403):
                raise ValueError(_cannot_access(kernel)) from None
            raise
        status = _standin.read_json(self._version_dir(state, kernel, service) / "status.json",
                                    {"status": "QUEUED", "failure_message": ""})
        return ApiGetKernelSessionStatusResponse(KernelWorkerStatus[status["status"]],
                                                 status.get("failure_message", ""))

    def kernels_output(self, kernel: str, path: str, file_pattern: str | None = None,
                       force: bool = False, quiet: bool = True, page_token: str | None = None,
                       page_size: int = 20) -> tuple[list[str], str | None]:
        """The files the version left in its working folder, and `<slug>.log` (the log)."""
        if kernel is None:
            raise ValueError("A kernel must be specified")
        _owner, kernel_slug, _version = self.parse_kernel_string(kernel)
        target_dir = path if path is not None else os.path.join(os.getcwd(), "output")
        if not os.path.exists(target_dir):
            os.makedirs(target_dir)
        if not os.path.isdir(target_dir):
            raise ValueError("You must specify a directory for the kernels output")
        compiled = None
        if file_pattern is not None:
            try:
                compiled = re.compile(file_pattern)
            except re.error as e:
                raise ValueError(f"Invalid regex pattern '{file_pattern}': {e}") from None
        service = "kernels.KernelsApiService/ListKernelSessionOutput"
        try:
            state = self._server("kernels_output", service, kernel=kernel, path=path)
        except HTTPError as e:
            if e.response.status_code in (401, 403):
                raise ValueError(_cannot_access(kernel)) from None
            raise
        version_dir = self._version_dir(state, kernel, service)
        status = _standin.read_json(version_dir / "status.json", {}).get("status")
        outfiles: list[str] = []
        if status not in ("COMPLETE", "ERROR"):
            return outfiles, None
        working = version_dir / "kaggle" / "working"
        for item in sorted(p for p in working.rglob("*") if p.is_file()):
            name = item.relative_to(working).as_posix()
            if compiled and not compiled.search(name):
                continue
            outfile = os.path.join(target_dir, name)
            os.makedirs(os.path.dirname(outfile), exist_ok=True)
            if force or not os.path.exists(outfile):
                shutil.copyfile(item, outfile)
            outfiles.append(outfile)
        log = (version_dir / "log.json").read_text() if (version_dir / "log.json").exists() \
            else ""
        if log:
            outfile = os.path.join(target_dir, kernel_slug + ".log")
            outfiles.append(outfile)
            with open(outfile, "w", encoding="utf-8") as out:
                out.write(log)
        return outfiles, None

    # -- datasets ------------------------------------------------------------------------

    def validate_dataset_string(self, dataset: str) -> None:
        if dataset:
            if "/" not in dataset:
                raise ValueError("Dataset must be specified in the form of '{username}/"
                                 "{dataset-slug}'")
            split = dataset.split("/")
            if not split[0] or not split[1] or len(split) > 3:
                raise ValueError("Invalid dataset specification " + dataset)

    def get_dataset_metadata_file(self, folder: str) -> str:
        meta_file = os.path.join(folder, self.DATASET_METADATA_FILE)
        if not os.path.isfile(meta_file):
            meta_file = os.path.join(folder, self.OLD_DATASET_METADATA_FILE)
            if not os.path.isfile(meta_file):
                raise ValueError("Metadata file not found: " + self.DATASET_METADATA_FILE)
        return meta_file

    def dataset_status(self, dataset: str, format: str | None = None) -> str:  # noqa: A002
        """'ready' once a version exists (HTTPError 404 for an unknown dataset)."""
        if dataset is None:
            raise ValueError("A dataset must be specified")
        if format is not None:
            raise NotImplementedError("the stand-in answers dataset_status without format")
        if "/" in dataset:
            self.validate_dataset_string(dataset)
            owner, slug = dataset.split("/")[:2]
        else:
            owner, slug = self.get_config_value(self.CONFIG_NAME_USER) or "", dataset
        service = "datasets.DatasetApiService/GetDatasetStatus"
        state = self._server("dataset_status", service, dataset=dataset)
        if not _standin.versions(state / "datasets" / owner / slug):
            raise _http_error(404, "Not Found", service)
        return "ready"

    def _upload(self, folder: str, target: Path, dir_mode: str) -> None:
        """The folder's files (and, unless dir_mode is "skip", its folders: the real client
        uploads them as archives, which Kaggle unpacks) as the dataset version's files."""
        target.mkdir(parents=True)
        for item in sorted(Path(folder).iterdir()):
            if item.name in (self.DATASET_METADATA_FILE, self.OLD_DATASET_METADATA_FILE):
                continue
            if item.is_dir():
                if dir_mode != "skip":
                    shutil.copytree(item, target / item.name)
            else:
                shutil.copyfile(item, target / item.name)

    def dataset_create_new(self, folder: str, public: bool = False, quiet: bool = False,
                           convert_to_csv: bool = True, dir_mode: str = "skip",
                           ignore_patterns: list[str] | None = None) -> ApiCreateDatasetResponse:
        if not os.path.isdir(folder):
            raise ValueError("Invalid folder: " + folder)
        with open(self.get_dataset_metadata_file(folder)) as f:
            meta_data = json.load(f)
        for key in ("id", "title", "licenses"):
            if key not in meta_data:
                raise ValueError(f"Key {key} not found in data")
        ref, title, licenses = meta_data["id"], meta_data["title"], meta_data["licenses"]
        owner, slug = ref.split("/")[:2]
        user = self.config_values.get(self.CONFIG_NAME_USER, "")
        if ref == user + "/INSERT_SLUG_HERE":
            raise ValueError("Default slug detected, please change values before uploading")
        if title == "INSERT_TITLE_HERE":
            raise ValueError("Default title detected, please change values before uploading")
        if len(licenses) != 1:
            raise ValueError("Please specify exactly one license")
        if len(slug) < 6 or len(slug) > 50:
            raise ValueError("The dataset slug must be between 6 and 50 characters")
        if len(title) < 6 or len(title) > 50:
            raise ValueError("The dataset title must be between 6 and 50 characters")
        found = True
        try:
            self.dataset_status(ref)
        except HTTPError:
            found = False
        resp = ApiCreateDatasetResponse()
        if found:
            resp.status = "error"
            resp.error = (f'The requested slug "{slug}" is already in use by a dataset. '
                          "Please choose another slug.")
            return resp
        state = self._server("dataset_create_new", "datasets.DatasetApiService/CreateDataset",
                             folder=folder, public=public, dir_mode=dir_mode)
        self._upload(folder, state / "datasets" / owner / slug / "1" / "files", dir_mode)
        resp.ref, resp.status, resp.error = f"{owner}/{slug}", "ok", None
        resp.url = f"https://www.kaggle.com/datasets/{owner}/{slug}"
        return resp

    def dataset_create_version(self, folder: str, version_notes: str, quiet: bool = False,
                               convert_to_csv: bool = True, delete_old_versions: bool = False,
                               dir_mode: str = "skip",
                               ignore_patterns: list[str] | None = None
                               ) -> ApiCreateDatasetResponse:
        if not os.path.isdir(folder):
            raise ValueError("Invalid folder: " + folder)
        with open(self.get_dataset_metadata_file(folder)) as f:
            meta_data = json.load(f)
        ref = self.get_or_default(meta_data, "id", None)
        if not ref and not meta_data.get("id_no"):
            raise ValueError("ID or slug must be specified in the metadata")
        if not ref:
            raise NotImplementedError("the stand-in knows datasets by slug only, not id_no")
        self.validate_dataset_string(ref)
        owner, slug = ref.split("/")[:2]
        service = "datasets.DatasetApiService/CreateDatasetVersion"
        state = self._server("dataset_create_version", service, folder=folder,
                             version_notes=version_notes, dir_mode=dir_mode)
        d_dir = state / "datasets" / owner / slug
        numbers = _standin.versions(d_dir)
        if not numbers:
            raise _http_error(404, "Not Found", service)
        self._upload(folder, d_dir / str(numbers[-1] + 1) / "files", dir_mode)
        resp = ApiCreateDatasetResponse()
        resp.ref, resp.status, resp.error = f"{owner}/{slug}", "ok", None
        resp.url = f"https://www.kaggle.com/datasets/{owner}/{slug}"
        return resp

    # -- quota ---------------------------------------------------------------------------

    def quota_view(self) -> ApiGetAcceleratorQuotaStatisticsResponse:
        """The weekly accelerator quota (control.json "quota": {gpu_quota, tpu_quota, ...})."""
        state = self._server("quota_view",
                             "kernels.KernelsApiService/GetAcceleratorQuotaStatistics")
        return ApiGetAcceleratorQuotaStatisticsResponse(_standin.control(state).get("quota", {}))


def _cannot_access(kernel: str) -> str:
    return (f"Cannot access kernel '{kernel}' (Permission 'kernels.get' was denied). "
            "The most likely cause is a wrong kernel slug. "
            "The benchmark_task_slug returned by get_benchmark_leaderboard differs from the actual "
            "kernel slug — use the slug from the notebook URL (kaggle.com/code/owner/KERNEL-SLUG), "
            "not from the leaderboard. It can also occur if the notebook is private.")
