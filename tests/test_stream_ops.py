"""ops/ and docker-compose.yml: the dashboard and alert rules use only metrics the worker
exports, metric names follow the Prometheus conventions with bounded labels, the provisioning
and compose files are consistent with the code, and promtool accepts the Prometheus files
(where Debian's ``prometheus`` package provides it)."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

yaml = pytest.importorskip("yaml")

from neurogate.cli.config import load_settings  # noqa: E402
from neurogate.engine.config import ConfigError, EngineConfig  # noqa: E402
from neurogate.engine.stores import MemoryStore  # noqa: E402
from neurogate.stream.metrics import EXPORTED, Metrics, all_reasons  # noqa: E402
from neurogate.stream.settings import WorkerSettings  # noqa: E402
from neurogate.stream.worker import Processor, Record  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OPS = ROOT / "ops"
DASHBOARD = OPS / "grafana" / "dashboards" / "neurogate.json"
RULES = OPS / "prometheus" / "alerts.yml"
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
FORBIDDEN_LABELS = {"id", "key", "pattern", "event", "event_id", "offset", "ts", "value"}


def _exercised_exposition(source_names: tuple[str, ...] = ("s0", "s1", "s9")) -> str:
    """The /metrics text of a processor that has seen events, bad input, labels and a commit."""
    cfg = EngineConfig(warmup=20).replace(**{"neuronet.enabled": False})
    settings = WorkerSettings(partitions=2, store="memory://", metrics_source_names=source_names)
    proc = Processor(cfg, settings, MemoryStore())
    proc.assign([0, 1])
    recs = []
    for i in range(300):
        for s in range(6):
            value = math.sin(i / 7 + s) + (40.0 if i == 250 else 0.0)
            body = {"source": f"s{s}", "ts": 1_700_000_000 + 60 * i, "value": value,
                    "id": f"s{s}-{i}"}
            recs.append(Record(settings.events_topic, s % 2, len(recs), f"s{s}".encode(),
                               json.dumps(body).encode(), time.time()))
    recs.append(Record(settings.events_topic, 0, len(recs), b"s0", b"{oops", time.time()))
    recs.append(Record(settings.labels_topic, 0, 0, b"s0",
                       b'{"source": "s0", "id": "s0-250", "label": 1}', time.time()))
    out = proc.process(recs, highwaters={(settings.events_topic, 0): 5000})
    assert out.anomalies and out.deadletters
    proc.process(recs[:10])  # already counted: skipped
    proc.commit(force=True)
    proc.refresh_store_size()
    return proc.metrics.exposition().decode()


@pytest.fixture(scope="module")
def exposition() -> str:
    return _exercised_exposition()


def _families(text: str) -> dict[str, str]:
    """{family name: type} from the # TYPE lines."""
    return {m.group(1): m.group(2) for m in re.finditer(r"^# TYPE (\S+) (\S+)$", text, re.M)}


def _samples(text: str) -> list[tuple[str, dict[str, str]]]:
    out = []
    for line in text.splitlines():
        if line and not line.startswith("#"):
            head = line.rsplit(" ", 1)[0]
            name, _, labels = head.partition("{")
            out.append((name, dict(re.findall(r'(\w+)="([^"]*)"', labels))))
    return out


def _used_metrics(expr: str) -> set[str]:
    names = set(re.findall(r"\b(neurogate_[a-z0-9_]+)", expr))
    out = set()
    for n in names:
        for suffix in HISTOGRAM_SUFFIXES:
            if n.endswith(suffix) and n[: -len(suffix)] in EXPORTED:
                n = n[: -len(suffix)]
        out.add(n)
    return out


def _dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]


def _rule_exprs() -> list[str]:
    rules = yaml.safe_load(RULES.read_text())
    return [r["expr"] for g in rules["groups"] for r in g["rules"]]


# -- metrics -------------------------------------------------------------------------------------


def test_every_metric_in_dashboard_and_rules_is_exported(exposition: str) -> None:
    exported = set(_families(exposition))
    assert exported == set(EXPORTED), "EXPORTED lists exactly what the worker exposes"
    for where, exprs in (("dashboard", _dashboard_exprs()), ("rules", _rule_exprs())):
        assert exprs
        used = set().union(*(_used_metrics(e) for e in exprs))
        assert used, where
        assert used <= exported, f"{where} uses metrics the worker does not export: " \
            f"{sorted(used - exported)}"


def test_metric_names_follow_prometheus_conventions(exposition: str) -> None:
    families = _families(exposition)
    for name, kind in families.items():
        assert name.startswith("neurogate_")
        assert not re.search(r"_(ms|milliseconds|percent|minutes|bytes_total_total)$", name)
        if kind == "counter":
            assert name.endswith("_total"), name
        else:
            assert not name.endswith("_total"), name
        if kind == "histogram":
            assert name.endswith(("_seconds", "_events", "_score")), name
    assert "neurogate_build_info" in families and "neurogate_encoder_info" in families
    assert not [n for n in exposition.splitlines() if n.startswith("neurogate_") and
                "_created" in n.split("{")[0]], "no *_created series"


def test_labels_are_bounded(exposition: str) -> None:
    sources = set()
    for name, labels in _samples(exposition):
        assert not FORBIDDEN_LABELS & set(labels), (name, labels)
        if "source" in labels:
            sources.add(labels["source"])
        if name == "neurogate_deadletter_records_total":
            assert labels["reason"] in all_reasons()
        if name == "neurogate_events_total":
            assert labels["status"] in ("scored", "warming", "rejected")
    assert sources == {"s0", "s1", "s9", "other"}, "the named sources (s9 not seen yet), " \
        "and 'other' for the rest"


def test_source_labels_are_the_same_whatever_the_order_of_arrival() -> None:
    """The label set depends on the configuration only: two workers (or one worker before and
    after a restart) that see the sources in other orders export the same series."""
    cfg = EngineConfig(warmup=5).replace(**{"neuronet.enabled": False})
    settings = WorkerSettings(partitions=1, store="memory://", metrics_source_names=("s3", "s7"))
    label_sets = []
    for order in (range(10), reversed(range(10))):
        proc = Processor(cfg, settings, MemoryStore())
        proc.assign([0])
        recs = [Record(settings.events_topic, 0, n, None, json.dumps(
            {"source": f"s{s}", "ts": 1_700_000_000 + i, "value": i % 3}).encode())
            for n, (i, s) in enumerate((i, s) for i in range(20) for s in list(order))]
        proc.process(recs)
        text = proc.metrics.exposition().decode()
        label_sets.append({labels["source"] for _, labels in _samples(text) if "source" in labels})
    assert label_sets[0] == label_sets[1] == {"s3", "s7", "other"}


def test_scores_per_source_and_store_errors_are_exported_from_the_start(exposition: str) -> None:
    samples = {(name, tuple(sorted(labels.items()))): float(line.rsplit(" ", 1)[1])
               for line in exposition.splitlines() if line and not line.startswith("#")
               for name, labels in [_samples(line)[0]]}

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    scored = value("neurogate_events_total", source="s0", status="scored")
    assert scored > 0
    assert value("neurogate_event_score_count", source="s0") == scored
    assert value("neurogate_event_score_bucket", source="s0", le="+Inf") == scored
    assert value("neurogate_event_score_bucket", source="s0", le="0.93") <= scored
    assert 0 < value("neurogate_event_score_sum", source="s0") <= scored
    assert value("neurogate_event_score_count", source="s9") == 0  # named, not seen: at 0
    fresh = Metrics().exposition().decode()
    for operation in ("commit", "open", "stats"):  # a first error is an increase from 0
        assert f'neurogate_store_errors_total{{operation="{operation}"}} 0.0' in fresh
    assert 'neurogate_events_flagged_total{source="other"} 0.0' in fresh
    assert 'neurogate_incidents_total{source="other"} 0.0' in fresh


@pytest.mark.parametrize("names", [(), ("a",)], ids=["all-other", "named"])
def test_incidents_count_the_flags_that_open_an_episode(names: tuple[str, ...]) -> None:
    """Of three flags, one escalates an open episode: two incidents, three flags."""
    metrics = Metrics(source_names=names)
    flagged = np.array([True, True, False, True])
    metrics.count_events(["a", "a", "a", "b"], np.zeros(4, dtype=np.int8), flagged,
                         np.array([0.95, 0.99, 0.2, 0.93]), np.array([False, True, False, False]))
    text = metrics.exposition().decode()

    def total(name: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(name + "{"))

    assert total("neurogate_events_flagged_total") == 3
    assert total("neurogate_incidents_total") == 2
    if names:
        assert 'neurogate_incidents_total{source="a"} 1.0' in text


def test_a_worker_whose_engine_is_not_running_is_not_ready() -> None:
    """Before the engine runs (e.g. waiting for its store) /metrics says neurogate_ready 0, so
    NeurogateWorkerNotReady can fire; faust's own pages are off and it binds 127.0.0.1."""
    from prometheus_client.parser import text_string_to_metric_families

    from neurogate.stream.app import create_app

    config, settings = load_settings(None, ["worker.store=memory://"], {})
    app = create_app(config, settings)
    families = list(text_string_to_metric_families(app.neurogate.exposition().decode()))
    assert [(f.name, [s.value for s in f.samples]) for f in families] == [("neurogate_ready", [0])]
    assert app.conf.web_bind == "127.0.0.1"
    assert [prefix for prefix, _ in app.web._enabled_blueprints()] == [""]  # {"status": "OK"}


def test_metrics_source_names_setting(tmp_path: Path) -> None:
    env = {"NEUROGATE_WORKER__METRICS_SOURCE_NAMES": "pump-1, pump-2"}
    assert load_settings(None, [], env)[1].metrics_source_names == ("pump-1", "pump-2")
    toml = tmp_path / "w.toml"
    toml.write_text('[worker]\nmetrics_source_names = ["pump-7", "pump 8"]\n')
    assert load_settings(toml, [], {})[1].metrics_source_names == ("pump-7", "pump 8")
    toml.write_text("[worker]\nmetrics_source_names = 50\n")
    with pytest.raises(ConfigError, match="metrics_source_names must be a list, got 50"):
        load_settings(toml, [], {})
    assert load_settings(None, ["worker.metrics_source_names=a"], {})[1] \
        .metrics_source_names == ("a",)
    with pytest.raises(ConfigError, match="at most 1000"):
        WorkerSettings(metrics_source_names=tuple(f"s{i}" for i in range(1001)))
    with pytest.raises(ConfigError, match="unknown setting 'worker.metrics_sources'"):
        load_settings(None, ["worker.metrics_sources=50"], {})


# -- Grafana -------------------------------------------------------------------------------------


def test_dashboard_is_well_formed() -> None:
    dash = json.loads(DASHBOARD.read_text())
    ds = yaml.safe_load((OPS / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = ds["datasources"][0]["uid"]
    assert ds["apiVersion"] == 1 and {"name", "type", "access"} <= set(ds["datasources"][0])
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for topic in ("throughput", "latency", "flag rate by source", "dead letters by reason",
                  "cache hit ratio", "pattern counts", "encoder", "scores by source",
                  "scores and flags per source"):
        assert topic in titles, topic
    for p in dash["panels"]:
        assert p["datasource"] == {"type": "prometheus", "uid": uid}
        assert all(t["datasource"]["uid"] == uid for t in p["targets"])
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24
    assert "$" not in json.dumps(dash).replace("$instance", "").replace("$__", ""), \
        "no environment variables in dashboard JSON (Grafana does not expand them there)"
    exprs = " ".join(_dashboard_exprs())
    assert "histogram_quantile(0.99" in exprs and "histogram_quantile(0.5" in exprs


def test_dashboard_provider_points_at_the_mounted_directory() -> None:
    prov = yaml.safe_load((OPS / "grafana/provisioning/dashboards/dashboards.yml").read_text())
    path = prov["providers"][0]["options"]["path"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./ops/grafana/dashboards:{path}:ro" in mounts
    assert "./ops/grafana/provisioning:/etc/grafana/provisioning:ro" in mounts


# -- Prometheus ----------------------------------------------------------------------------------


def _promtool() -> str:
    local = Path(sys.executable).parent / "promtool"  # `make tools` puts it in the venv
    exe = shutil.which("promtool") or (str(local) if local.exists() else None)
    if exe is None:
        pytest.skip("promtool not installed (Debian: apt-get install prometheus)")
    return exe


@pytest.mark.parametrize("args", [
    ["check", "config", "ops/prometheus/prometheus.yml"],
    ["check", "rules", "ops/prometheus/alerts.yml"],
    ["test", "rules", "ops/prometheus/alerts_test.yml"],
], ids=["check-config", "check-rules", "test-rules"])
def test_promtool(args: list[str]) -> None:
    done = subprocess.run([_promtool(), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """Every panel query parses (checked by promtool as recording rules, with Grafana's
    variables filled in)."""
    rules = [{"record": f"dashboard:query_{n}", "expr": expr.replace("$instance", ".*")
              .replace("$__rate_interval", "1m")} for n, expr in enumerate(_dashboard_exprs())]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = subprocess.run([_promtool(), "check", "rules", str(path)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_alerts_cover_the_operational_risks() -> None:
    rules = yaml.safe_load(RULES.read_text())
    names = {r["alert"]: r for g in rules["groups"] for r in g["rules"] if "alert" in r}
    records = {r["record"]: r for g in rules["groups"] for r in g["rules"] if "record" in r}
    for alert in ("NeurogateWorkerDown", "NeurogateConsumerLagGrowing", "NeurogateLatencyHigh",
                  "NeurogateDeadLetterRateHigh", "NeurogateFlagRateSpike",
                  "NeurogateCacheErrors", "NeurogateStoreErrors"):
        assert alert in names
        assert names[alert]["labels"]["severity"] in ("critical", "warning", "info")
        assert names[alert]["annotations"]["summary"]
    scrape = yaml.safe_load((OPS / "prometheus/prometheus.yml").read_text())
    job = next(j for j in scrape["scrape_configs"] if j["job_name"] == "neurogate")
    assert 'up{job="neurogate"}' in names["NeurogateWorkerDown"]["expr"]
    assert "neurogate:workers_expected" in names["NeurogateWorkerDown"]["expr"]
    assert records["neurogate:workers_expected"]["expr"] == "vector(1)"  # compose runs one
    assert job["dns_sd_configs"][0]["names"] == ["worker"]
    assert job["dns_sd_configs"][0]["port"] == WorkerSettings().web_port


# -- docker-compose and Dockerfile ---------------------------------------------------------------


def _compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


def test_compose_services_and_kraft_broker() -> None:
    services = _compose()["services"]
    assert {"broker", "postgres", "redis", "worker", "prometheus", "grafana"} <= set(services)
    broker = services["broker"]
    assert broker["image"].startswith("apache/kafka:")
    env = broker["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{env['KAFKA_NODE_ID']}@broker:")
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 1
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == 1
    listeners = dict(x.split("://") for x in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    assert listeners["PLAINTEXT"] == "broker:19092"
    assert all(name in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]
               for name in ("CONTROLLER", "PLAINTEXT", "PLAINTEXT_HOST"))


def test_compose_worker_is_scalable_and_configured() -> None:
    services = _compose()["services"]
    worker = services["worker"]
    assert "ports" not in worker, "a fixed host port would break --scale"
    env = {k: str(v) for k, v in worker["environment"].items()}
    _, settings = load_settings(None, [], env)  # every NEUROGATE_WORKER__ name is real
    assert settings.bootstrap == services["broker"]["environment"][
        "KAFKA_ADVERTISED_LISTENERS"].split("PLAINTEXT://")[1]
    assert settings.store.startswith("redis+postgresql://") and "@postgres:" in settings.store
    assert str(settings.web_port) in [str(p) for p in worker["expose"]]
    assert WorkerSettings().web_host == "127.0.0.1" and settings.web_host == "0.0.0.0", \
        "127.0.0.1 by default; the compose worker listens on its network for Prometheus"
    assert worker["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert worker["build"]["dockerfile"] == "ops/Dockerfile"
    assert (ROOT / worker["build"]["dockerfile"]).is_file()
    for service in ("prometheus", "grafana"):
        for mount in services[service]["volumes"]:
            host = mount.split(":")[0]
            if host.startswith("./"):
                assert (ROOT / host).exists(), mount


REQUIRED_ENV = ("POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD")  # no defaults in the compose file


def _docker_compose(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``docker-compose ARGS`` on docker-compose.yml (Debian's 1.29 from `make tools`, or one
    on PATH): `config` parses and interpolates the file without a Docker engine."""
    local = Path(sys.executable).parent / "docker-compose"
    exe = str(local) if local.exists() else shutil.which("docker-compose")
    if exe is None:
        reason = "docker-compose not installed (make tools)"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set, so not skipping: {reason}")
        pytest.skip(reason)
    base = {k: v for k, v in os.environ.items()
            if k not in REQUIRED_ENV and not k.startswith(("COMPOSE_", "KAFKA_HOST"))}
    return subprocess.run([exe, "--project-directory", str(ROOT), "-f",
                           str(ROOT / "docker-compose.yml"), *args], capture_output=True,
                          text=True, env={**base, **env}, timeout=120, cwd=ROOT)


def test_docker_compose_config_accepts_the_file_and_binds_to_localhost() -> None:
    done = _docker_compose("config", env={"POSTGRES_PASSWORD": "pg-pw-1",
                                          "GRAFANA_ADMIN_PASSWORD": "gf-pw-2"})
    assert done.returncode == 0, done.stderr
    services = yaml.safe_load(done.stdout)["services"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == "pg-pw-1"
    assert services["worker"]["environment"]["PGPASSWORD"] == "pg-pw-1"
    assert services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == "gf-pw-2"
    published = {name: [str(p) for p in svc.get("ports", [])] for name, svc in services.items()}
    assert published["broker"] == ["127.0.0.1:9092:9092/tcp"], published
    for name, ports in published.items():
        assert all(p.startswith("127.0.0.1:") for p in ports), (name, ports)
    opened = _docker_compose("config", env={"POSTGRES_PASSWORD": "x",
                                            "GRAFANA_ADMIN_PASSWORD": "y",
                                            "KAFKA_HOST_BIND": "0.0.0.0"})
    assert "0.0.0.0:9092:9092/tcp" in yaml.safe_load(opened.stdout)["services"]["broker"]["ports"]


@pytest.mark.parametrize("missing", REQUIRED_ENV)
def test_docker_compose_refuses_a_missing_password(missing: str) -> None:
    env = {name: "set" for name in REQUIRED_ENV if name != missing}
    done = _docker_compose("config", "-q", env=env)
    assert done.returncode != 0
    assert f"set {missing} (see docs/operations.md)" in done.stderr, done.stderr


def test_dockerfile_is_multi_stage_and_unprivileged() -> None:
    text = (OPS / "Dockerfile").read_text()
    stages = re.findall(r"^FROM \S+ AS (\w+)", text, re.M)
    assert len(stages) >= 2
    final = text.split(f"AS {stages[-1]}")[1]
    user = re.findall(r"^USER (\S+)", final, re.M)
    assert user and user[-1].split(":")[0] not in ("0", "root")
    assert "COPY --from=" in final and "apt-get" not in final
    pinned = re.search(r'"torch==([\d.]+)"', (ROOT / "pyproject.toml").read_text())
    assert pinned and f"torch=={pinned.group(1)}+cpu" in (OPS / "requirements.lock").read_text()
    assert "/healthz" in text
    assert "@app.page(\"/healthz\")" in (ROOT / "stream/app.py").read_text()
