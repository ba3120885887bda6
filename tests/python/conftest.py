"""Shared fixtures for the Python suite.

The suite runs against the *installed* package (``pip install .`` into the
virtualenv), never against the source tree's ``python/bastion``: a module left
out of the wheel, or an extension built from stale sources, must fail here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import bastion
from helpers import MakeRecord, RedisServer, realistic_record

REPO = Path(__file__).resolve().parents[2]
SOURCE_PACKAGE = REPO / "python" / "bastion"
INSTALLED_PACKAGE = Path(bastion.__file__).resolve().parent

if INSTALLED_PACKAGE.is_relative_to(SOURCE_PACKAGE.parent):
    raise RuntimeError(
        f"bastion was imported from the source tree ({bastion.__file__}); the tests must run "
        "against the installed wheel: `pip install .` and run pytest from the repository root "
        "with the virtualenv's python, without python/ on sys.path"
    )


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak", action="store_true", default=False,
                     help="also run the long tests marked 'soak'")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--soak"):
        return
    skip = pytest.mark.skip(reason="soak test: long-running, enable with --soak")
    for item in items:
        if item.get_closest_marker("soak") is not None:
            item.add_marker(skip)


def pytest_report_header(config: pytest.Config) -> str:
    return f"bastion {bastion.__version__} from {INSTALLED_PACKAGE}"


def _package_files(package: Path) -> set[str]:
    return {p.name for p in package.iterdir()
            if p.suffix in {".py", ".pyi"} or p.name == "py.typed"}


def pytest_sessionstart(session: pytest.Session) -> None:
    # The installed package must hold every file of the source package.
    if SOURCE_PACKAGE.is_dir():
        missing = _package_files(SOURCE_PACKAGE) - _package_files(INSTALLED_PACKAGE)
        if missing:
            raise pytest.UsageError(
                f"the installed bastion ({INSTALLED_PACKAGE}) lacks {sorted(missing)} "
                "that python/bastion has; reinstall with `pip install .`"
            )
    if not list(INSTALLED_PACKAGE.glob("_core*.so")) and not list(INSTALLED_PACKAGE.glob("_core*.pyd")):
        raise pytest.UsageError(f"the installed bastion ({INSTALLED_PACKAGE}) has no _core extension")


@pytest.fixture
def ledger_path(tmp_path: Path) -> str:
    """A path for a new ledger (the directory does not exist yet)."""
    return str(tmp_path / "ledger")


@pytest.fixture
def ledger(ledger_path: str) -> Iterator[bastion.Ledger]:
    """A fresh ledger open for writing; closed after the test."""
    led = bastion.Ledger.open(ledger_path)
    yield led
    led.close()


@pytest.fixture
def make_record() -> MakeRecord:
    """Factory of realistic records: make_record(i, **overrides) -> dict."""
    return realistic_record


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server for this test (see helpers.RedisServer)."""
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(str(directory))
    try:
        yield server
    finally:
        server.stop()
