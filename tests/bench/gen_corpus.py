#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Seeded generator of realistic Airflow DAG folders for the benchmarks.

Layout (as DAG repositories of several teams tend to look):

  .airflowignore                      regexps: scratch areas, tests, WIP
  common/                             shared utility modules (hooks,
                                      callbacks, SLA helpers, factories)
  teams/<team>/<domain>/<pipeline>_dag.py   DAG files in several styles
  teams/<team>/<domain>/sql/*.sql           queries the DAGs template
  teams/<team>/<domain>/config/*.yaml       per-pipeline configuration
  teams/<team>/<domain>/helpers.py          domain helpers (no DAG)
  teams/<team>/scratch/, .../tests/         ignored by .airflowignore

Every .py file compiles. The same --seed and --files give the same bytes
and mtimes. Usage: gen_corpus.py OUT [--files 10000] [--seed 42]
"""

import argparse
import os
import pathlib
import random
import textwrap

TEAMS = ["analytics", "data_platform", "finance", "growth", "marketing",
         "ml_platform", "payments", "risk", "search", "supply_chain",
         "customer_success", "security"]
DOMAINS = ["ingest", "transform", "reporting", "exports", "quality",
           "features", "backfills", "partners", "warehouse", "events"]
SOURCES = ["postgres", "mysql", "s3", "gcs", "salesforce", "stripe",
           "zendesk", "kafka", "bigquery", "snowflake", "hubspot"]
OPERATORS = [
    ("BashOperator", "airflow.operators.bash",
     "bash_command='echo {{{{ ds }}}} && python -m jobs.{name} --date {{{{ ds }}}}'"),
    ("PythonOperator", "airflow.operators.python",
     "python_callable=run_{name}, op_kwargs={{'table': '{table}'}}"),
    ("SQLExecuteQueryOperator", "airflow.providers.common.sql.operators.sql",
     "conn_id='warehouse', sql='sql/{name}.sql', params={{'table': '{table}'}}"),
    ("EmptyOperator", "airflow.operators.empty", ""),
]
SCHEDULES = ["'@hourly'", "'@daily'", "'0 3 * * *'", "'*/15 * * * *'",
             "'@weekly'", "None", "'30 6 * * 1-5'"]
HEADER = "# Generated benchmark corpus (seed {seed}); not a real pipeline.\n"


def words(rng, n):
    pool = ["orders", "users", "events", "sessions", "invoices", "refunds",
            "clicks", "leads", "accounts", "shipments", "ledger", "churn"]
    return "_".join(rng.choice(pool) for _ in range(n))


def classic_dag(rng, team, domain, name, seed):
    ntasks = rng.randint(3, 14)
    ops = [rng.choice(OPERATORS) for _ in range(ntasks)]
    imports = sorted({f"from {mod} import {op}" for op, mod, _ in ops})
    tasks, funcs = [], []
    for k, (op, _, args) in enumerate(ops):
        table = words(rng, 2)
        tname = f"{name}_{k}"
        a = args.format(name=tname, table=table)
        tasks.append(f"    t{k} = {op}(task_id='{tname}'{', ' + a if a else ''})")
        if op == "PythonOperator":
            funcs.append(textwrap.dedent(f"""\
                def run_{tname}(table, **context):
                    \"\"\"Load one partition of {{table}} for the run's date.\"\"\"
                    ds = context["ds"]
                    rows = extract(SOURCE, table, ds)
                    return load(rows, target=f"{team}.{{table}}", partition=ds)
                """))
    chain = " >> ".join(f"t{k}" for k in range(ntasks))
    return (HEADER.format(seed=seed) + textwrap.dedent(f'''\
        """{team} / {domain}: {name.replace('_', ' ')}.

        Owner: {team}@example.com. Runbook: https://wiki.example.com/{team}/{name}
        """
        from datetime import datetime, timedelta

        from airflow import DAG
        ''') + "\n".join(imports) + "\n\n" + textwrap.dedent(f'''\
        from common.callbacks import notify_failure
        from common.io import extract, load

        SOURCE = "{rng.choice(SOURCES)}"

        default_args = {{
            "owner": "{team}",
            "retries": {rng.randint(0, 5)},
            "retry_delay": timedelta(minutes={rng.choice([1, 5, 10, 30])}),
            "on_failure_callback": notify_failure,
        }}

        ''') + "\n\n".join(funcs) + ("\n\n" if funcs else "") + textwrap.dedent(f'''\
        with DAG(
            dag_id="{team}__{domain}__{name}",
            start_date=datetime({rng.randint(2019, 2024)}, {rng.randint(1, 12)}, 1),
            schedule={rng.choice(SCHEDULES)},
            catchup={rng.choice(["False", "True"])},
            max_active_runs={rng.randint(1, 4)},
            default_args=default_args,
            tags=["{team}", "{domain}"],
            template_searchpath=["teams/{team}/{domain}"],
        ) as dag:
        ''') + "\n".join(tasks) + f"\n    {chain}\n")


def taskflow_dag(rng, team, domain, name, seed):
    steps = [words(rng, 1) + f"_{k}" for k in range(rng.randint(2, 8))]
    body = []
    for s in steps:
        body.append(textwrap.dedent(f'''\
                @task(retries={rng.randint(0, 3)})
                def {s}(upstream=None):
                    """Step {s} of {name}."""
                    cfg = load_config("{team}/{domain}/config/{name}.yaml")
                    return {{"step": "{s}", "rows": len(cfg.get("tables", [])), "up": upstream}}
            '''))
    calls = "None"
    for s in steps:
        calls = f"{s}({calls})"
    return (HEADER.format(seed=seed) + textwrap.dedent(f'''\
        """TaskFlow pipeline {name} of {team} ({domain})."""
        import pendulum

        from airflow.decorators import dag, task

        from common.config import load_config


        @dag(
            dag_id="{team}__{name}",
            schedule={rng.choice(SCHEDULES)},
            start_date=pendulum.datetime({rng.randint(2020, 2024)}, 1, 1, tz="UTC"),
            catchup=False,
            tags=["{team}", "taskflow"],
        )
        def {name}():
        ''') + textwrap.indent("".join(body), "    ") +
        f"    {calls}\n\n\n{name}()\n")


def dynamic_dag(rng, team, domain, name, seed):
    tables = [words(rng, 2) for _ in range(rng.randint(3, 20))]
    return HEADER.format(seed=seed) + textwrap.dedent(f'''\
        """One DAG per source table, generated from a list ({team})."""
        from datetime import datetime

        from airflow import DAG
        from airflow.operators.bash import BashOperator

        TABLES = {tables!r}

        for table in TABLES:
            dag_id = f"{team}__{name}__{{table}}"
            with DAG(dag_id, start_date=datetime(2023, 1, 1),
                     schedule={rng.choice(SCHEDULES)}, catchup=False) as dag:
                extract = BashOperator(task_id="extract",
                                       bash_command=f"extract --table {{table}} --date {{{{{{{{ ds }}}}}}}}")
                load = BashOperator(task_id="load",
                                    bash_command=f"load --table {{table}}")
                extract >> load
            globals()[dag_id] = dag
        ''')


def helper_module(rng, team, domain, seed):
    fns = []
    for k in range(rng.randint(3, 12)):
        fns.append(textwrap.dedent(f'''\
            def {words(rng, 2)}_{k}(rows, threshold={rng.randint(1, 1000)}):
                """Filter rows of {domain} below a threshold."""
                out = []
                for row in rows:
                    if row.get("value", 0) >= threshold:
                        out.append({{**row, "team": "{team}"}})
                return out
            '''))
    return HEADER.format(seed=seed) + f'"""Helpers for {team}/{domain}."""\n\n\n' + \
        "\n\n".join(fns)


COMMON = {
    "common/__init__.py": '"""Shared code of every team\'s DAGs."""\n',
    "common/callbacks.py": textwrap.dedent('''\
        """Failure and SLA callbacks shared by every team."""
        import logging

        from airflow.models import Variable

        log = logging.getLogger(__name__)


        def notify_failure(context):
            ti = context["task_instance"]
            channel = Variable.get("alerts_channel", default_var="#data-alerts")
            log.error("task %s of %s failed; paging %s", ti.task_id, ti.dag_id, channel)


        def sla_miss(dag, task_list, blocking_task_list, slas, blocking_tis):
            log.warning("SLA missed in %s: %s", dag.dag_id, task_list)
        '''),
    "common/io.py": textwrap.dedent('''\
        """Extract and load helpers over provider hooks."""
        from airflow.hooks.base import BaseHook


        def extract(source, table, ds):
            conn = BaseHook.get_connection(source)
            return [{"source": conn.conn_id, "table": table, "ds": ds}]


        def load(rows, target, partition):
            return {"target": target, "partition": partition, "rows": len(rows)}
        '''),
    "common/config.py": textwrap.dedent('''\
        """Read per-pipeline YAML configuration next to the DAG files."""
        import os

        import yaml

        BASE = os.path.join(os.path.dirname(__file__), "..", "teams")


        def load_config(rel):
            with open(os.path.join(BASE, rel)) as f:
                return yaml.safe_load(f) or {}
        '''),
}


def sql_file(rng, team, table):
    cols = ", ".join(words(rng, 1) + f"_{k}" for k in range(rng.randint(3, 12)))
    return textwrap.dedent(f"""\
        -- {team}: refresh {table} for one day
        INSERT INTO {team}.{table}
        SELECT {cols}
        FROM staging.{table}
        WHERE event_date = '{{{{ ds }}}}'
          AND tenant_id IN (SELECT id FROM {team}.tenants WHERE active)
        ON CONFLICT DO NOTHING;
        """)


def yaml_file(rng, team, name):
    tables = "\n".join(f"  - name: {words(rng, 2)}\n    keys: [id]\n"
                       f"    incremental: {rng.choice(['true', 'false'])}"
                       for _ in range(rng.randint(1, 8)))
    return (f"pipeline: {name}\nowner: {team}\nschedule: '@daily'\n"
            f"alerts:\n  email: {team}@example.com\ntables:\n{tables}\n")


AIRFLOWIGNORE = textwrap.dedent("""\
    # regexps, matched against paths relative to this folder
    scratch/
    /tests/
    .*_wip\\.py$
    deprecated_.*
    """)


def generate(out, files=10000, seed=42):
    """Write a corpus of @files files under @out; returns the count."""
    rng = random.Random(seed)
    out = pathlib.Path(out)
    written = []

    def put(rel, text):
        p = out / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        t = 1_600_000_000 + rng.randint(0, 100_000_000)
        os.utime(p, (t, t))
        written.append(rel)

    put(".airflowignore", AIRFLOWIGNORE)
    for rel, text in COMMON.items():
        put(rel, HEADER.format(seed=seed) + text)
    for k in range(20):
        put(f"common/operators/op_{k}.py", helper_module(rng, "common", "ops", seed))
    styles = [classic_dag, classic_dag, taskflow_dag, dynamic_dag]
    while len(written) < files:
        team, domain = rng.choice(TEAMS), rng.choice(DOMAINS)
        base = f"teams/{team}/{domain}"
        name = f"{words(rng, 2)}_{len(written)}"
        r = rng.random()
        if r < 0.45:
            put(f"{base}/{name}_dag.py", rng.choice(styles)(rng, team, domain, name, seed))
        elif r < 0.72:
            put(f"{base}/sql/{name}.sql", sql_file(rng, team, words(rng, 2)))
        elif r < 0.87:
            put(f"{base}/config/{name}.yaml", yaml_file(rng, team, name))
        elif r < 0.93:
            put(f"{base}/helpers_{len(written)}.py", helper_module(rng, team, domain, seed))
        elif r < 0.96:
            put(f"teams/{team}/scratch/{name}_dag.py",
                classic_dag(rng, team, "scratch", name, seed))
        elif r < 0.98:
            put(f"teams/{team}/tests/test_{name}.py",
                "def test_dag_loads():\n    assert True\n")
        else:
            put(f"{base}/{name}_wip.py", taskflow_dag(rng, team, domain, name, seed))
    return len(written)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--files", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=42)
    a = ap.parse_args()
    print(generate(a.out, a.files, a.seed), "files written to", a.out)


if __name__ == "__main__":
    main()
