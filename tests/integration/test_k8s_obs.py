# SPDX-License-Identifier: Apache-2.0
"""The observability dagfs-provision renders: the Grafana dashboard
(valid JSON, checked with jq; every query parses as PromQL and names only
metrics a running dagfs exports), the alerting rules (promtool check
rules, and promtool test rules with series that must and must not fire),
and with --prometheus-operator the PrometheusRule, the metrics Services
and the ServiceMonitor that selects them.
"""

import json
import re
import shutil
import subprocess
import sys
import urllib.request

import pytest
import yaml

from conftest import skip_or_fail, wait_for
from test_k8s import run_prov, stand_ins, validate

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve()
                       .parents[1] / "rigs"))
from git_servers import free_port  # noqa: E402


def promtool():
    p = shutil.which("promtool")
    if not p:
        skip_or_fail("promtool is missing (Debian package prometheus)")
    return p


def jq(*args, path):
    if not shutil.which("jq"):
        skip_or_fail("jq is missing")
    r = subprocess.run(["jq", *args, str(path)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def render(tmp_path, *extra, name="out"):
    out = tmp_path / name
    run_prov("render", out, "--image", "reg.example/dagfs:1",
             "--source", "git:https://e.com/a.git,period=30s,at=a",
             "--source", "s3:bucket/dags/,at=b,name=dags", *extra)
    return out


def exprs_of_dashboard(path):
    d = json.loads(path.read_text())
    return [t["expr"] for p in d["panels"] for t in p["targets"]]


def exprs_of_rules(doc):
    return [r["expr"] for g in doc["groups"] for r in g["rules"]]


def test_alert_rules_pass_promtool(tmp_path):
    out = render(tmp_path)
    r = subprocess.run([promtool(), "check", "rules",
                        str(out / "dagfs-alerts.yml")], capture_output=True,
                       text=True)
    assert r.returncode == 0 and "SUCCESS: 4 rules found" in r.stdout, \
        r.stdout + r.stderr
    rules = yaml.safe_load((out / "dagfs-alerts.yml").read_text())
    stale = {r["labels"]["source"]: r["expr"] for r in rules["groups"][0][
        "rules"] if r["alert"] == "DagfsSourceStale"}
    # six of each source's own period: 30s for a, the default 10s for b
    assert stale == {
        "a": 'time() - dagfs_source_last_success_timestamp_seconds'
             '{source="a"} > 180',
        "dags": 'time() - dagfs_source_last_success_timestamp_seconds'
                '{source="dags"} > 60'}


UNIT_TEST = """
rule_files: [{rules}]
evaluation_interval: 1m
tests:
- interval: 1m
  input_series:
  # source a: stuck at its start (last success at t=0), failing, not ready
  - series: 'dagfs_source_last_success_timestamp_seconds{{source="a",pod="p"}}'
    values: '0x15'
  - series: 'dagfs_source_consecutive_failures{{source="a",pod="p"}}'
    values: '0 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14'
  - series: 'dagfs_source_healthy{{source="a",pod="p"}}'
    values: '0x15'
  # source dags: syncs every minute (its last success is "now"), healthy
  - series: 'dagfs_source_last_success_timestamp_seconds{{source="dags",pod="p"}}'
    values: '0+60x15'
  - series: 'dagfs_source_consecutive_failures{{source="dags",pod="p"}}'
    values: '0x15'
  - series: 'dagfs_source_healthy{{source="dags",pod="p"}}'
    values: '1x15'
  alert_rule_test:
  - eval_time: 2m
    alertname: DagfsSourceStale
    exp_alerts: []
  - eval_time: 10m
    alertname: DagfsSourceStale
    exp_alerts:
    - exp_labels: {{severity: warning, source: a, pod: p}}
      exp_annotations:
        summary: dagfs source a has not synced for 6 periods
        description: "p: the last successful sync of a was 10m 0s ago (period 30s); Airflow parses an old revision. 'dagfs status' names the last error."
  - eval_time: 5m
    alertname: DagfsSourceFailing
    exp_alerts: []
  - eval_time: 10m
    alertname: DagfsSourceFailing
    exp_alerts:
    - exp_labels: {{severity: warning, source: a, pod: p}}
      exp_annotations:
        summary: dagfs source a fails to sync
        description: "p: 9 failed syncs in a row; the last good revision is still served."
  - eval_time: 10m
    alertname: DagfsSourceNotReady
    exp_alerts:
    - exp_labels: {{severity: critical, source: a, pod: p}}
      exp_annotations:
        summary: dagfs source a is not ready
        description: "p: no revision published, or past max-failures; /readyz fails and the pod is not Ready."
"""


def test_alerts_fire_for_a_stale_failing_source_only(tmp_path):
    """promtool test rules: the rendered rules fire for the source that
    stopped syncing, after their `for`, and never for the healthy one."""
    out = render(tmp_path)
    t = tmp_path / "alerts_test.yml"
    t.write_text(UNIT_TEST.format(rules=out / "dagfs-alerts.yml"))
    r = subprocess.run([promtool(), "test", "rules", str(t)],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr


def dagfs_metric_names(dagfs, tmp_path):
    """The metric families a real dagfs mount exports on /metrics."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "dag.py").write_text("x = 1\n")
    port = free_port()
    m = dagfs.mount([f"dir:{src},name=dags"],
                    args=["--http", f"127.0.0.1:{port}"],
                    ready=lambda mnt: (mnt / "dag.py").exists())
    (m.mnt / "dag.py").read_text()  # a FUSE request or two

    def body():
        try:
            return urllib.request.urlopen(
                f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
        except OSError:
            return None
    wait_for(lambda: body() is not None, timeout=10, what="/metrics")
    names = set(re.findall(r"^(dagfs_[a-z_]+)[{ ]", body(), re.M))
    m.stop()
    return names


def test_dashboard_is_valid_and_queries_real_metrics(tmp_path, dagfs):
    out = render(tmp_path)
    dash = out / "grafana-dashboard.json"
    assert jq("-r", ".title", path=dash) == "dagfs\n"
    ids = jq("-c", "[.panels[].id]", path=dash)
    assert len(set(json.loads(ids))) == len(json.loads(ids)) >= 8
    jq("-e", 'all(.panels[]; .datasource.uid == "${datasource}" and '
       '(.targets | length) >= 1 and .gridPos.w > 0)', path=dash)
    jq("-e", '[.templating.list[].name] == ["datasource", "namespace", '
       '"source"]', path=dash)
    titles = jq("-r", ".panels[].title", path=dash)
    for what in ("Revision age", "Sync duration", "Failed syncs",
                 "FUSE requests", "Content store size"):
        assert what in titles, what
    # no two panels overlap on Grafana's 24-column grid
    cells = set()
    for p in json.loads(dash.read_text())["panels"]:
        g = p["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, p["title"]
                cells.add((x, y))
    # every query parses (promtool, as recording rules), with Grafana's
    # variables filled in as Grafana would
    exprs = exprs_of_dashboard(dash)
    rec = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dagfs:panel{i}", "expr": e.replace(
            "$__rate_interval", "5m").replace("$namespace", ".*").replace(
            "$source", ".*")} for i, e in enumerate(exprs)]}]}
    f = tmp_path / "dashboard-rules.yml"
    f.write_text(yaml.safe_dump(rec))
    r = subprocess.run([promtool(), "check", "rules", str(f)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    # and names only what the daemon exports (histograms as _bucket)
    exported = dagfs_metric_names(dagfs, tmp_path)
    assert "dagfs_fuse_requests_total" in exported
    exported |= {n + "_bucket" for n in exported}
    rules = yaml.safe_load((out / "dagfs-alerts.yml").read_text())
    for e in exprs + exprs_of_rules(rules):
        for name in re.findall(r"dagfs_[a-z_]+", e):
            assert name in exported, (name, e)
    # the same dashboard as a ConfigMap for Grafana's sidecar
    cm = yaml.safe_load((out / "grafana-dashboard.yaml").read_text())
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["dagfs.json"]) == json.loads(dash.read_text())
    validate(out / "grafana-dashboard.yaml")


def test_prometheus_operator_objects(tmp_path):
    plain = render(tmp_path, name="plain")
    assert not (plain / "prometheus-operator.yaml").exists()
    out = render(tmp_path, "--prometheus-operator", "--prometheus-release",
                 "kps", "--executor", "LocalExecutor")
    docs = [d for d in yaml.safe_load_all(
        (out / "prometheus-operator.yaml").read_text()) if d]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    rule = by_kind["PrometheusRule"][0]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kps"
    assert rule["spec"] == yaml.safe_load(
        (out / "dagfs-alerts.yml").read_text())
    spec = tmp_path / "spec.yml"
    spec.write_text(yaml.safe_dump(rule["spec"]))
    r = subprocess.run([promtool(), "check", "rules", str(spec)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    sm = by_kind["ServiceMonitor"][0]
    assert sm["metadata"]["labels"]["release"] == "kps"
    assert sm["spec"]["endpoints"] == [
        {"port": "dagfs-http", "path": "/metrics", "interval": "30s"}]
    # it selects a Service in front of every long-lived dagfs: the
    # dag-processors' (dagfs-service.yaml), the triggerers', and here,
    # with LocalExecutor, the schedulers'
    services = by_kind["Service"] + [yaml.safe_load(
        (out / "dagfs-service.yaml").read_text())]
    want = sm["spec"]["selector"]["matchLabels"]
    picked = {s["spec"]["selector"]["component"] for s in services
              if want.items() <= s["metadata"]["labels"].items()}
    assert picked == {"dag-processor", "triggerer", "scheduler"}
    for s in services:
        assert s["spec"]["ports"][0]["name"] == "dagfs-http"
    validate(out / "dagfs-service.yaml")
    plain_svc = tmp_path / "services.yaml"
    plain_svc.write_text(yaml.safe_dump_all(by_kind["Service"]))
    validate(plain_svc)
    env, log = stand_ins(tmp_path)
    run_prov("apply", out, "--image", "reg.example/dagfs:1", "--source",
             "git:https://e.com/a.git,period=30s,at=a", "--source",
             "s3:bucket/dags/,at=b,name=dags", "--prometheus-operator",
             "--prometheus-release", "kps", "--executor", "LocalExecutor",
             env=env)
    calls = log.read_text().splitlines()
    mon = f"kubectl apply -n airflow -f {out}/prometheus-operator.yaml"
    helm = [c for c in calls if c.startswith("helm ")][0]
    assert calls.index(mon) < calls.index(helm)


@pytest.mark.parametrize("args, message", [
    (["--stale-periods", "0"], "--stale-periods must be at least 1"),
    (["--prometheus-release", "Bad_Name"], "--prometheus-release: invalid"),
])
def test_bad_monitoring_input(tmp_path, args, message):
    r = run_prov("render", tmp_path / "out", "--source",
                 "git:https://e.com/a.git", *args, check=False)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr
