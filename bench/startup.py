"""Start-up time of the command line and of ``import neurogate``, against a bare interpreter.

Each command runs ``--repeat`` times as a fresh process, interleaved (so load on the machine
hits them alike); the best time of each is reported, with its ratio to ``python -c pass`` in
the same run. The target (issue 12): ``neurogate --help`` under 0.3 s. It also lists the heavy
packages that ``neurogate --help`` loaded (none is expected).

    .venv/bin/python bench/startup.py [--repeat 15] [--json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

TARGET_SECONDS = 0.3
# loaded only by the commands that use them (pyproject.toml's extras)
HEAVY = ("torch", "numba", "psycopg", "redis", "faust", "aiokafka", "kafka", "prometheus_client",
         "matplotlib", "pandas", "pysad", "scipy")


def _cli(*args: str) -> list[str]:
    """The installed ``neurogate`` script when there is one (what users run), else the same
    entry point through ``-c``."""
    script = Path(sys.executable).with_name("neurogate")
    if script.is_file():
        return [str(script), *args]
    code = f"import sys; from neurogate.cli.main import main; sys.exit(main({list(args)!r}))"
    return [sys.executable, "-c", code]


COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "python -c 'import neurogate'": [sys.executable, "-c", "import neurogate"],
    "neurogate --version": _cli("--version"),
    "neurogate --help": _cli("--help"),
}


def best_times(repeat: int) -> dict[str, float]:
    """Best wall time of each command over ``repeat`` interleaved rounds."""
    best = dict.fromkeys(COMMANDS, float("inf"))
    for _ in range(repeat):
        for name, cmd in COMMANDS.items():
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def heavy_modules_of_help() -> list[str]:
    """Heavy top-level packages in ``sys.modules`` after ``neurogate --help``."""
    code = ("import sys\nfrom neurogate.cli.main import main\ntry:\n    main(['--help'])\n"
            "except SystemExit:\n    pass\n"
            "print(','.join(sorted({m.split('.')[0] for m in sys.modules})), file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(done.stderr.strip().split(","))
    return [m for m in HEAVY if m in loaded]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=15, help="runs of each command (best is kept)")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = ap.parse_args()
    best = best_times(args.repeat)
    base = best["python -c pass"]
    heavy = heavy_modules_of_help()
    if args.json:
        print(json.dumps({"best_seconds": best, "heavy_modules_of_help": heavy,
                          "target_seconds": TARGET_SECONDS}))
    else:
        for name, t in best.items():
            print(f"{name:32} {t * 1000:7.1f} ms  {t / base:5.1f}x python -c pass")
        print(f"heavy packages loaded by --help: {', '.join(heavy) or 'none'}")
        ok = best["neurogate --help"] < TARGET_SECONDS
        print(f"target neurogate --help < {TARGET_SECONDS} s: {'met' if ok else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
