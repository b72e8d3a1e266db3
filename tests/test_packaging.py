"""neurogate as an installed package: the core runs without any extra (no torch: the NeuroNet is
off with one warning), the command line starts without loading heavy packages, a missing
extra is named, and the built wheel installs under the one name ``neurogate`` into a fresh
virtual environment beside a user project with its own ``engine`` and ``stream`` packages."""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys
import tomllib
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from neurogate.cli.main import main
from neurogate.engine.config import EngineConfig
from neurogate.engine.detector import Detector
from neurogate.engine.events import Event
from neurogate.engine.extras import NEURONET_OFF, _warn_neuronet_off

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
T0 = 1_700_000_000
SPIKE = 500
# packages that only some commands need (pyproject.toml's extras)
OPTIONAL = ("torch", "psycopg", "psycopg_pool", "redis", "faust", "aiokafka", "kafka",
            "prometheus_client", "matplotlib", "pandas", "pysad", "river", "sklearn", "optuna",
            "sqlalchemy")
# The command line loaded as the console script does, run, then the top-level packages it loaded
# on stderr (last line): `-c` keeps the caller's cwd off the result.
LOADED = """
import sys
from neurogate.cli.main import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print("LOADED " + " ".join(sorted({m.split(".")[0] for m in sys.modules})), file=sys.stderr)
sys.exit(code)
"""


def write_csv(path: Path, rows: int = 600) -> Path:
    """A sine sampled every minute with one spike at row SPIKE."""
    with path.open("w") as f:
        f.write("timestamp,value\n")
        for t in range(rows):
            f.write(f"{T0 + 60 * t},{math.sin(t / 7) + (8.0 if t == SPIKE else 0.0):.6f}\n")
    return path


def clean_env() -> dict[str, str]:
    """The environment without NEUROGATE_* settings or a PYTHONPATH that would add this tree."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith("NEUROGATE_") and k != "PYTHONPATH"}


def loaded_by(args: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    done = subprocess.run([sys.executable, "-c", LOADED, *args], cwd=cwd, env=clean_env(),
                          capture_output=True, text=True, timeout=240)
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("LOADED "), done.stderr
    return done, set(last.split()[1:])


@pytest.fixture
def no_torch(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """torch not importable (Python's own marker for a blocked import: ``sys.modules[name] =
    None``), and the once-per-process warning not yet given."""
    monkeypatch.setitem(sys.modules, "torch", None)
    _warn_neuronet_off.cache_clear()
    yield
    _warn_neuronet_off.cache_clear()


# -- start-up and what each command loads --------------------------------------------------------


def test_help_and_version_load_nothing_heavy(tmp_path: Path) -> None:
    """Start-up stays light (bench/startup.py measures it): no numpy, numba or extra."""
    for args in (["--help"], ["run", "--help"], ["--version"]):
        done, loaded = loaded_by(args, tmp_path)
        assert done.returncode == 0, done.stderr
        heavy = loaded & {"numpy", "numba", "scipy", *OPTIONAL}
        assert not heavy, f"neurogate {' '.join(args)} loaded {sorted(heavy)}"


@pytest.mark.slow
def test_run_on_csv_loads_no_extra(tmp_path: Path) -> None:
    """`neurogate run` on a CSV with the default settings (NeuroNet enabled, the SQLite store)
    loads the engine and nothing of the extras, even where they are installed."""
    write_csv(tmp_path / "data.csv")
    done, loaded = loaded_by(["run", "data.csv", "--out", "flags.jsonl", "-q"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert {"numpy", "numba"} <= loaded
    assert not loaded & set(OPTIONAL), sorted(loaded & set(OPTIONAL))
    flags = [json.loads(line) for line in (tmp_path / "flags.jsonl").read_text().splitlines()]
    assert [r["ts"] for r in flags] == [T0 + 60 * SPIKE]


def test_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    import neurogate

    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out == f"neurogate {neurogate.__version__}\n"
    assert neurogate.__version__ == PYPROJECT["project"]["version"]


# -- without torch -------------------------------------------------------------------------------


@pytest.mark.usefixtures("no_torch")
def test_without_torch_the_neuronet_is_off_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The default configuration (NeuroNet enabled) past its training point: fixed codes serve,
    one warning for the process however many detectors and field sets, and no crash."""
    cfg = EngineConfig(warmup=20).replace(**{"neuronet.train_after": 300})
    stream = [Event("s", float(T0 + t), (math.sin(t / 5),)) for t in range(600)]
    stream.append(Event("s", float(T0 + 600), (25.0,)))
    with caplog.at_level(logging.WARNING, logger="neurogate"):
        det = Detector(cfg)
        out = det.process_many(stream)
        second = Detector(cfg)  # another detector, another field set: no second warning
        second.process_many([Event("t", float(T0 + t), (1.0, float(t % 3)), ("a", "b"))
                             for t in range(400)])
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == [NEURONET_OFF]
    assert "pip install 'neurogate[neuronet]'" in NEURONET_OFF
    assert "neuronet.enabled=false" in NEURONET_OFF
    assert det.events_seen > cfg.neuronet.train_after
    assert det.model_version().startswith("fixed:") and "neuronet" not in det.model_version()
    assert out.flagged[-1] and out.result(600).status == "scored"


@pytest.mark.usefixtures("no_torch")
def test_without_torch_no_warning_when_the_neuronet_is_disabled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cfg = EngineConfig(warmup=20).replace(**{"neuronet.enabled": False})
    with caplog.at_level(logging.WARNING, logger="neurogate"):
        Detector(cfg).process_many([Event("s", float(T0 + t), (1.0,)) for t in range(50)])
    assert not caplog.records


@pytest.mark.usefixtures("no_torch")
def test_a_command_that_needs_a_missing_extra_names_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """No traceback: one line naming the extra to install, exit code 1."""
    data = write_csv(tmp_path / "data.csv")
    assert main(["train", str(data), "--out", str(tmp_path / "nn.pt")]) == 1
    err = capsys.readouterr().err
    assert err == ("neurogate: error: torch is not installed; it comes with pip install "
                   "'neurogate[neuronet]'\n")


def test_a_missing_store_driver_names_its_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    monkeypatch.delitem(sys.modules, "neurogate.engine.stores.postgres", raising=False)
    code = main(["db", "status", "--store", "postgresql://user:s3cret@127.0.0.1:9/none"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "psycopg is not installed; it comes with pip install 'neurogate[postgres]'" in err
    assert "s3cret" not in err and "Traceback" not in err


# -- the image -----------------------------------------------------------------------------------


def test_docker_image_builds_from_every_mapped_folder() -> None:
    """The image copies (and its build context lets in) every folder that pyproject.toml maps
    into the package, and installs the extras the worker imports."""
    folders = set(PYPROJECT["tool"]["setuptools"]["package-dir"].values())
    dockerfile = (ROOT / "ops/Dockerfile").read_text()
    context = (ROOT / "ops/Dockerfile.dockerignore").read_text().splitlines()
    for folder in folders:
        assert f"COPY {folder} ./{folder}" in dockerfile, folder
        assert f"!{folder}/**" in context, folder
    installed = re.search(r"pip install --no-deps --no-build-isolation '\.\[([a-z,]+)\]'",
                          dockerfile)
    assert installed is not None
    assert set(installed.group(1).split(",")) == WORKER_EXTRAS


WORKER_EXTRAS = {"neuronet", "postgres", "redis", "kafka"}


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_docker_image_installs_the_hashed_lock() -> None:
    """ops/requirements.lock pins every package of the worker's extras with hashes (CPU torch
    at pyproject.toml's pin), and the image installs it with --require-hashes, wheels only,
    without a compiler."""
    dockerfile = (ROOT / "ops/Dockerfile").read_text()
    assert "build-essential" not in dockerfile and "apt-get" not in dockerfile
    assert re.search(r"pip install --no-deps --require-hashes --only-binary=:all: .*"
                     r"-r requirements\.lock", dockerfile, re.S)
    assert "COPY ops/requirements.lock ./" in dockerfile
    assert "!ops/requirements.lock" in (ROOT / "ops/Dockerfile.dockerignore").read_text()
    pins: dict[str, tuple[str, list[str]]] = {}
    name = ""
    for line in (ROOT / "ops/requirements.lock").read_text().splitlines():
        if m := re.match(r"^([A-Za-z0-9_.\-]+)==(\S+) \\$", line):
            name = m.group(1).lower().replace("_", "-")
            pins[name] = (m.group(2), [])
        elif m := re.match(r"^\s+--hash=sha256:([0-9a-f]{64})", line):
            pins[name][1].append(m.group(1))
        else:
            assert not line or line.lstrip().startswith("#"), f"not a hashed pin: {line!r}"
    assert all(hashes for _, hashes in pins.values()), [n for n, (_, h) in pins.items() if not h]
    torch = re.search(r'"torch==([\d.]+)"', (ROOT / "pyproject.toml").read_text())
    assert torch is not None and pins["torch"][0] == f"{torch.group(1)}+cpu"
    extras = PYPROJECT["project"]["optional-dependencies"]
    wanted = {_name(r) for r in PYPROJECT["project"]["dependencies"]}
    wanted |= {_name(r) for e in WORKER_EXTRAS for r in extras[e]}
    wanted |= {"setuptools", "wheel"}  # the project is built without build isolation
    wanted.discard("neurogate")  # the redis extra names neurogate[postgres]
    assert wanted <= set(pins), sorted(wanted - set(pins))
    assert "neurogate" not in pins


# -- the wheel in a fresh virtual environment ----------------------------------------------------


def _copy_source(dest: Path) -> Path:
    """The repository without its virtual environments, caches and build output (a wheel built
    in place would write build/ and *.egg-info into the working tree)."""
    shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(
        ".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", ".*_cache",
        ".hypothesis", "*.db", "*.db-*"))
    return dest


def _run(cmd: list[str | Path], cwd: Path, timeout: float = 600,
         ) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=clean_env(), capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, f"{cmd}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.mark.slow
@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_wheel_installs_into_a_fresh_venv_beside_a_user_engine_package(tmp_path: Path) -> None:
    version = PYPROJECT["project"]["version"]
    src = _copy_source(tmp_path / "src")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp_path / "dist", "."],
         cwd=src)
    (wheel,) = (tmp_path / "dist").glob("neurogate-*.whl")

    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"neurogate", f"neurogate-{version}.dist-info"}
    assert "neurogate/py.typed" in names
    assert "neurogate/evaluation/gutentag.yaml" in names
    assert {"neurogate/engine/detector.py", "neurogate/cli/main.py",
            "neurogate/engine/stores/sqlite.py"} <= set(names)
    metadata = zipfile.ZipFile(wheel).read(f"neurogate-{version}.dist-info/METADATA").decode()
    required = re.findall(r"^Requires-Dist: ([A-Za-z0-9_.-]+)[^;\n]*$", metadata, re.M)
    # the core; the rest: extras
    assert sorted(required) == ["numba", "numpy", "orjson", "tqdm", "tzdata"]
    extras = set(re.findall(r"^Provides-Extra: (\S+)$", metadata, re.M))
    assert {"neuronet", "postgres", "redis", "kafka", "eval", "all"} <= extras

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py, cli = env_dir / "bin/python", env_dir / "bin/neurogate"
    _run([py, "-m", "pip", "install", "-q", wheel], cwd=tmp_path)  # core deps, pip's cache
    _run([py, "-c", "import importlib.util as u; assert u.find_spec('torch') is None"],
         cwd=tmp_path)

    project = tmp_path / "project"  # a user's project with packages of the design's names
    for package in ("engine", "stream"):
        (project / package).mkdir(parents=True)
        (project / package / "__init__.py").write_text(f"OWNER = 'user {package}'\n")
    write_csv(project / "data.csv")
    both = """if True:
        import sys
        import engine, stream
        import neurogate
        from neurogate import Detector, EngineConfig, Event, __version__, open_store
        from neurogate.engine.detector import Detector as Same
        from neurogate.cli.main import main
        assert Detector is Same and open_store("memory://") is not None
        cfg = EngineConfig(warmup=20).replace(**{"neuronet.enabled": False})
        out = Detector(cfg).process_many([Event("s", float(t), (t % 7,)) for t in range(60)])
        print(engine.OWNER, stream.OWNER, __version__, out.result(59).status,
              engine.__file__.startswith(sys.argv[1]), neurogate.__file__.startswith(sys.argv[2]))
    """
    shown = _run([py, "-c", both, project, env_dir], cwd=project).stdout.split()
    assert shown == ["user", "engine", "user", "stream", version, "scored", "True", "True"]

    assert _run([cli, "--version"], cwd=project).stdout == f"neurogate {version}\n"

    done = _run([cli, "run", "data.csv", "--out", "flags.jsonl", "-q"], cwd=project)
    assert done.stderr.count(NEURONET_OFF) == 1, done.stderr
    assert "Traceback" not in done.stderr
    flags = [json.loads(line) for line in (project / "flags.jsonl").read_text().splitlines()]
    assert [r["ts"] for r in flags] == [T0 + 60 * SPIKE] and flags[0]["flagged"] is True
    assert (project / "neurogate.db").is_file()

    missing = subprocess.run([cli, "db", "status", "--store", "postgresql://127.0.0.1:9/none"],
                             cwd=project, env=clean_env(), capture_output=True, text=True,
                             timeout=120)
    assert missing.returncode == 1
    assert missing.stderr == ("neurogate: error: psycopg is not installed; it comes with pip "
                              "install 'neurogate[postgres]'\n")
