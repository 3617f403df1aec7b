# SPDX-License-Identifier: Apache-2.0
"""DAG files the real-Airflow tests publish through dagfs sources."""

import textwrap


def gated(dag_id, code, gates, code_from=None):
    """A two-task DAG: `first` returns @code once the test releases it
    (it writes GATES/<run_id>.started, waits at most 240 s for
    GATES/<run_id>.go); `second` then returns @code too. So a run whose
    first task is held while a new revision is published shows, in its
    XComs, which revision's code each task ran. @code_from: a module to
    import CODE from instead (a helper in another source)."""
    code_line = f"from {code_from} import CODE" if code_from else f"CODE = {code!r}"
    return textwrap.dedent(f"""\
        import pathlib
        import time

        from airflow.sdk import dag, task
        {code_line}
        GATES = pathlib.Path({str(gates)!r})


        @dag(dag_id={dag_id!r}, schedule=None, catchup=False, tags=["dagfs"])
        def the_dag():
            @task
            def first(run_id=None):
                (GATES / f"{{run_id}}.started").write_text(CODE)
                deadline = time.monotonic() + 240
                while not (GATES / f"{{run_id}}.go").exists():
                    if time.monotonic() > deadline:
                        raise RuntimeError("the test never released the gate")
                    time.sleep(0.2)
                return CODE

            @task
            def second(_):
                return CODE

            second(first())


        the_dag()
        """)


def simple(dag_id, code, tags=("dagfs",)):
    """A one-task DAG whose task returns @code, tagged @tags (a tag is in
    the serialised DAG, the code a task returns is not)."""
    return textwrap.dedent(f"""\
        from airflow.sdk import dag, task


        @dag(dag_id={dag_id!r}, schedule=None, catchup=False, tags={list(tags)!r})
        def the_dag():
            @task
            def only():
                return {code!r}

            only()


        the_dag()
        """)
