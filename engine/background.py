"""NeuroNet training off the scoring path: a job that trains a candidate and measures it against
the encoders serving now, in a separate process (``python -m neurogate.engine.background``)
or inline.

A job is one self-contained payload (an ``.npz``: the training series, the settings, the
encoder to fine-tune and the serving encoders to compare with) and one result (the candidate's
artifact, its training report and the planted-anomaly AUC per level of every encoder). The
same payload always gives the same result, in a process or inline, so the detector can install
the result at a fixed event count whatever the training took (``neurogate.engine.shadow``), and a
resumed detector can restart a job from the payload kept in its state snapshot.

The process imports torch; the scoring process does not need to.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import subprocess
import sys
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

from neurogate.engine.config import FixedEncoderConfig
from neurogate.engine.encoder import Encoder, FixedEncoder
from neurogate.engine.neuronet import NeuroNet, NeuroNetConfig

log = logging.getLogger("neurogate.background")

PLANTED_SOURCES = 32  # training series (evenly spread) the planted-anomaly check runs on


@dataclass
class Result:
    """What a job returns."""

    candidate: NeuroNet
    report: dict[str, Any]  # TrainReport.as_dict()
    # encoder version -> level -> ROC-AUC on each planted anomaly (the same ones for every
    # encoder of the job, so they compare anomaly by anomaly)
    aucs: dict[str, dict[int, np.ndarray]]


def payload(series: list[np.ndarray], config: NeuroNetConfig, *, steps: int, seed: int,
            init: NeuroNet | None, serving: list[Encoder], alpha: float,
            alpha0: float) -> bytes:
    """Pack a job (see the module docstring). ``serving`` holds the fixed encoder and any
    NeuroNet serving a level now."""
    lengths = np.array([len(s) for s in series], dtype=np.int64)
    values = np.concatenate([np.asarray(s, dtype=np.float32).reshape(len(s), -1)
                             for s in series])
    fixed = [e for e in serving if isinstance(e, FixedEncoder)]
    nets = [e for e in serving if isinstance(e, NeuroNet)]
    header = {
        "config": dataclasses.asdict(config), "steps": steps, "seed": seed, "alpha": alpha,
        "alpha0": alpha0,
        "fixed": [{"config": dataclasses.asdict(f.config), "channels": f.channels}
                  for f in fixed],
    }
    arrays: dict[str, np.ndarray] = {"values": values, "lengths": lengths,
                                     "header": _text(json.dumps(header))}
    if init is not None:
        arrays["init"] = np.frombuffer(init.to_bytes(), dtype=np.uint8)
    for i, net in enumerate(nets):
        arrays[f"serving{i}"] = np.frombuffer(net.to_bytes(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def _text(s: str) -> np.ndarray:
    return np.frombuffer(s.encode(), dtype=np.uint8)


def run(job: bytes) -> bytes:
    """Train and measure (see the module docstring); returns the packed result."""
    from neurogate.engine.neurotrain import fit
    from neurogate.engine.planted import level_aucs

    with np.load(io.BytesIO(job), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    header = json.loads(arrays["header"].tobytes())
    config = NeuroNetConfig(**header["config"])
    cuts = np.cumsum(arrays["lengths"])[:-1]
    series = np.split(arrays["values"], cuts)
    init = NeuroNet.from_bytes(arrays["init"].tobytes()) if "init" in arrays else None
    serving: list[Encoder] = [FixedEncoder(FixedEncoderConfig(**f["config"]), f["channels"])
                              for f in header["fixed"]]
    k = 0
    while f"serving{k}" in arrays:
        serving.append(NeuroNet.from_bytes(arrays[f"serving{k}"].tobytes()))
        k += 1
    net, report = fit(series, config, steps=header["steps"], seed=header["seed"], init=init)
    pick = np.unique(np.linspace(0, len(series) - 1, min(PLANTED_SOURCES, len(series)))
                     .astype(int))
    encoders = [net, *serving]
    aucs = level_aucs(encoders, [series[i] for i in pick], seed=header["seed"],
                      alpha=header["alpha"], alpha0=header["alpha0"])
    out = {
        "report": report.as_dict(),
        "aucs": {e.version: {str(lv): v.tolist() for lv, v in a.items()}
                 for e, a in zip(encoders, aucs, strict=True)},
    }
    buf = io.BytesIO()
    np.savez(buf, candidate=np.frombuffer(net.to_bytes(), dtype=np.uint8),
             result=_text(json.dumps(out)))
    return buf.getvalue()


def unpack(result: bytes) -> Result:
    """Read what ``run`` returned."""
    with np.load(io.BytesIO(result), allow_pickle=False) as npz:
        candidate = NeuroNet.from_bytes(npz["candidate"].tobytes(), "trained candidate")
        out = json.loads(npz["result"].tobytes())
    aucs = {v: {int(lv): np.array(a, dtype=np.float64) for lv, a in levels.items()}
            for v, levels in out["aucs"].items()}
    return Result(candidate, out["report"], aucs)


class Job:
    """A running job: in a child process (``background``) or already done inline."""

    def __init__(self, job: bytes, *, background: bool) -> None:
        self.payload = job
        self._result: bytes | None = None
        self._error: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._cancelled = False
        if not background:
            self._result = run(job)
            return
        env = dict(os.environ)
        # the child imports this very package: it searches where this process searches
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        env["OMP_NUM_THREADS"] = "1"
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", __name__], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        except OSError as exc:
            self._error = f"could not start the training process: {exc}"
            return
        self._finalizer = weakref.finalize(self, _kill, self._proc)
        self._thread = threading.Thread(target=self._talk, name="neurogate-train", daemon=True)
        self._thread.start()

    def _talk(self) -> None:
        assert self._proc is not None
        out, err = self._proc.communicate(self.payload)
        if self._proc.returncode == 0:
            self._result = out
        else:
            tail = err.decode(errors="replace").strip().splitlines()[-5:]
            self._error = (f"training process exited with {self._proc.returncode}: "
                           + " | ".join(tail))

    @property
    def done(self) -> bool:
        """Whether the result (or a failure) is in."""
        return self._thread is None or not self._thread.is_alive()

    def result(self) -> Result:
        """Wait for the result. If the process failed, the job runs inline instead (same
        payload, same result) after a warning."""
        if self._thread is not None:
            self._thread.join()
        if self._result is None:
            if not self._cancelled:
                log.warning("background NeuroNet training failed (%s); training inline "
                            "instead", self._error)
            self._result = run(self.payload)
        return unpack(self._result)

    def cancel(self) -> None:
        """Stop the child process, if any (the result is not needed now; if it is asked for
        after all, the job runs inline)."""
        if self._proc is not None:
            self._cancelled = True
            _kill(self._proc)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _exit_with(parent: int) -> None:
    """Leave when the scoring process is gone (killed before it could stop this one)."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def main() -> None:
    """Child process: a payload on stdin, the result on stdout."""
    threading.Thread(target=_exit_with, args=(os.getppid(),), daemon=True).start()
    job = sys.stdin.buffer.read()
    sys.stdout.buffer.write(run(job))
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    main()
