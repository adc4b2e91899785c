"""Stand-in for the `kaggle` package (2.2.5) in tests: same import path and names, no network.

Put tests/standin first on sys.path (or PYTHONPATH) and `import kaggle` loads this. As the
real package does (kaggle/__init__.py), importing it builds `kaggle.api` and tries to
authenticate, swallowing the failure (SystemExit included), so a missing credential shows only
when a call is made or when the caller authenticates itself. The "server" is a local state
folder (KAGGLE_STANDIN_STATE): see kaggle/_standin.py and docs/kaggle-client.md.
"""
# ruff: noqa: I001 - the same order as the real package's __init__
from kaggle.api.kaggle_api_extended import KaggleApi

__version__ = "2.2.5"
STANDIN = True

api = KaggleApi()
try:
    api.authenticate()
except (Exception, SystemExit):
    pass
