# SPDX-License-Identifier: Apache-2.0
"""Real Apache Airflow 3 on loopback, for tests and benchmarks (named
airflow_rig, not airflow: on sys.path it must not hide Airflow itself).

  Postgres  PostgreSQL from Debian as Airflow's metadata database: initdb
            and pg_ctl run as the `postgres` user in a temporary directory,
            listening on 127.0.0.1 on a port the kernel chose
  Airflow   AIRFLOW_HOME in a temporary directory, `airflow db migrate`,
            then `airflow api-server`, `airflow scheduler` (LocalExecutor:
            tasks really run) and `airflow dag-processor`, each started and
            stopped by pid; a small REST API v2 client and `airflow ... -o
            json`

Airflow comes from the venv that tests/run.sh makes from
tests/airflow/requirements-lock.txt (DAGFS_AIRFLOW_VENV, or the cache
directory named by the lock file's hash). Intervals are short so that a
new bundle version is picked up in about a second and a file re-parsed
within a few.

    pg = Postgres().start()
    af = Airflow(bundles=[...], db_url=pg.url).start()
    af.wait_dag("my_dag"); run = af.trigger("my_dag"); af.wait_run("my_dag", run)
    af.stop(); pg.stop()
"""

import glob
import hashlib
import json
import os
import pathlib
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

REPO = pathlib.Path(__file__).resolve().parents[2]
LOCK = REPO / "tests" / "airflow" / "requirements-lock.txt"
VENV_CACHE = pathlib.Path("/var/cache/dagfs-test")


def free_port():
    """A port the kernel chose on 127.0.0.1 (free right now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def venv_dir():
    """The Airflow venv: $DAGFS_AIRFLOW_VENV, or the one tests/run.sh
    makes for this lock file."""
    if os.environ.get("DAGFS_AIRFLOW_VENV"):
        return pathlib.Path(os.environ["DAGFS_AIRFLOW_VENV"])
    h = hashlib.sha256(LOCK.read_bytes()).hexdigest()[:16]
    return VENV_CACHE / f"venv-airflow-{h}"


def wait(pred, timeout, what, interval=0.5):
    """Call @pred until it returns a true value (returned); after
    @timeout seconds raise AssertionError naming @what and the last
    exception @pred raised."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            v = pred()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - quoted on timeout
            last = e
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}"
                                 + (f" (last error: {last!r})" if last else ""))
        time.sleep(interval)


def _as_postgres():
    pw = pwd.getpwnam("postgres")

    def drop():
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)
    return drop


class Postgres:
    """A throw-away PostgreSQL cluster on loopback (trust auth, no fsync)."""

    def __init__(self, root=None):
        self.root = pathlib.Path(root or tempfile.mkdtemp(prefix="dagfs-pg-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = None
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not bins:
            raise RuntimeError("PostgreSQL is not installed (/usr/lib/postgresql/*/bin/pg_ctl)")
        self.bin = pathlib.Path(bins[-1]).parent

    def _run(self, *argv, timeout=120):
        return subprocess.run([str(a) for a in argv], preexec_fn=_as_postgres(),
                              capture_output=True, text=True, timeout=timeout,
                              cwd=self.root, check=True)

    @property
    def url(self):
        return f"postgresql+psycopg2://airflow@127.0.0.1:{self.port}/airflow"

    @property
    def pid(self):
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def start(self):
        pw = pwd.getpwnam("postgres")
        os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self._run(self.bin / "initdb", "-D", self.data, "-U", "airflow",
                  "--auth=trust", "-E", "UTF8", "--no-sync")
        for attempt in range(3):  # the port may be taken between bind and listen
            self.port = free_port()
            opts = (f"-c listen_addresses=127.0.0.1 -p {self.port} "
                    f"-c unix_socket_directories={self.root} -c fsync=off "
                    "-c synchronous_commit=off -c full_page_writes=off "
                    "-c max_connections=200")
            r = subprocess.run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", opts,
                                "-l", str(self.log), "-w", "-t", "60", "start"],
                               preexec_fn=_as_postgres(), capture_output=True, text=True,
                               cwd=self.root)
            if r.returncode == 0:
                break
        else:
            raise RuntimeError(f"PostgreSQL did not start: {r.stderr}\n"
                               f"{self.log.read_text(errors='replace')[-2000:]}")
        self._run(self.bin / "createdb", "-h", "127.0.0.1", "-p", self.port,
                  "-U", "airflow", "airflow")
        return self

    def psql(self, sql):
        """Rows of @sql as lists of strings (tab-separated output)."""
        r = self._run(self.bin / "psql", "-h", "127.0.0.1", "-p", self.port, "-U",
                      "airflow", "-d", "airflow", "-At", "-F", "\t", "-c", sql)
        return [line.split("\t") for line in r.stdout.splitlines() if line]

    def stop(self):
        pid = self.pid
        if pid:
            subprocess.run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast",
                            "-w", "-t", "30", "stop"], preexec_fn=_as_postgres(),
                           capture_output=True, cwd=self.root)
            try:
                os.kill(pid, 0)
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.root, ignore_errors=True)


def _stat(pid):
    """(ppid, sid, state) of process @pid from /proc, or None if it is gone."""
    try:
        raw = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    f = raw[raw.rindex(")") + 2:].split()  # the name may hold spaces and parens
    return int(f[1]), int(f[3]), f[0]


def session_members(sid):
    """Live processes (not zombies) that are in session @sid or descend
    from one that is: a child in its own process group (Airflow's task
    supervisor setpgid()s each task) keeps its session; one that called
    setsid() is still found through its parent."""
    procs = {}
    for d in os.listdir("/proc"):
        if d.isdigit() and (st := _stat(int(d))):
            procs[int(d)] = st
    found = {pid for pid, (_, s, state) in procs.items() if s == sid and state != "Z"}
    grew = True
    while grew:
        more = {pid for pid, (pp, _, state) in procs.items()
                if pp in found and pid not in found and state != "Z"}
        found |= more
        grew = bool(more)
    return found


def cmdline(pid):
    try:
        return pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ") \
            .decode(errors="replace").strip()
    except OSError:
        return "?"


class Process:
    """One long-running Airflow command, in its own session, by pid."""

    def __init__(self, name, argv, env, log):
        self.name, self.argv, self.env, self.log = name, argv, env, pathlib.Path(log)
        self.proc = None

    def start(self):
        self._log = open(self.log, "ab")
        self.proc = subprocess.Popen(self.argv, env=self.env, stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        return self

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=30):
        """SIGTERM to the process (Airflow's own shutdown), then SIGKILL
        to every process of its session and their descendants (API server
        workers, parsing processes, task supervisors and tasks, whatever
        their process group) until none is left. Returns the ones that
        outlived that ("pid cmdline" strings; empty when all went)."""
        if self.proc is None:
            return []
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        deadline = time.monotonic() + 10
        while True:
            left = session_members(self.proc.pid) - {self.proc.pid}
            if self.proc.poll() is None:
                left.add(self.proc.pid)
            if not left or time.monotonic() > deadline:
                break
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            time.sleep(0.1)
            self.proc.poll()  # reaps it once it is dead
        self.proc.wait()
        self._log.close()
        left = session_members(self.proc.pid)
        return [f"{pid} {cmdline(pid)}" for pid in sorted(left)]

    def log_text(self):
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""


class Airflow:
    """An Airflow 3 deployment: api-server, scheduler, dag-processor.

    @bundles: the dag_bundle_config_list (list of dicts); @dags_folder:
    [core] dags_folder; @config: extra {"SECTION__KEY": value} settings.
    """

    def __init__(self, db_url, bundles, root=None, dags_folder=None, config=None,
                 venv=None):
        self.root = pathlib.Path(root or tempfile.mkdtemp(prefix="dagfs-airflow-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.home = self.root / "home"
        self.home.mkdir(exist_ok=True)
        self.venv = pathlib.Path(venv or venv_dir())
        self.bin = self.venv / "bin"
        if not (self.bin / "airflow").exists():
            raise RuntimeError(f"no Airflow in {self.venv} (tests/run.sh installs it)")
        self.port = free_port()
        self.bundles = bundles
        self.storage = self.root / "bundles"
        self.procs = {}
        self.replaced = []  # processes start_process() replaced
        cfg = {
            "CORE__EXECUTOR": "LocalExecutor",
            "CORE__LOAD_EXAMPLES": "False",
            "CORE__DAGS_FOLDER": str(dags_folder or self.root / "dags"),
            "CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
            "CORE__PARALLELISM": "8",
            "CORE__FERNET_KEY": "",
            "DATABASE__SQL_ALCHEMY_CONN": db_url,
            "DATABASE__SQL_ALCHEMY_POOL_SIZE": "3",
            "API__HOST": "127.0.0.1",
            "API__PORT": str(self.port),
            "API__WORKERS": "1",
            "API__SECRET_KEY": secrets.token_hex(16),
            "API_AUTH__JWT_SECRET": secrets.token_hex(32),
            "LOGGING__BASE_LOG_FOLDER": str(self.root / "logs"),
            "LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(free_port()),
            "SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "SCHEDULER__TASK_QUEUED_TIMEOUT": "300",
            "DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(bundles),
            "DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH": str(self.storage),
            "DAG_PROCESSOR__REFRESH_INTERVAL": "1",
            "DAG_PROCESSOR__BUNDLE_REFRESH_CHECK_INTERVAL": "1",
            "DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
            "DAG_PROCESSOR__PARSING_PROCESSES": "2",
            "DAG_PROCESSOR__STALE_BUNDLE_CLEANUP_INTERVAL": "10",
            "DAG_PROCESSOR__STALE_BUNDLE_CLEANUP_AGE_THRESHOLD": "5",
            "DAG_PROCESSOR__STALE_BUNDLE_CLEANUP_MIN_VERSIONS": "1",
            "DAG_PROCESSOR__PRINT_STATS_INTERVAL": "3600",
        }
        cfg.update(config or {})
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("AIRFLOW") and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        self.env.update({f"AIRFLOW__{k}": v for k, v in cfg.items()})
        self.env.update({"AIRFLOW_HOME": str(self.home),
                         "PATH": f"{self.bin}:{self.env.get('PATH', '/usr/bin:/bin')}",
                         "PYTHONDONTWRITEBYTECODE": "1",
                         "NO_COLOR": "1"})
        self.base = f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------ processes

    def cli(self, *args, timeout=300, check=True, json_out=False):
        """Run `airflow ARGS...`; the parsed JSON of its output if
        @json_out (adds `-o json`), else the CompletedProcess."""
        argv = [str(self.bin / "airflow"), *map(str, args)]
        if json_out:
            argv += ["-o", "json"]
        r = subprocess.run(argv, env=self.env, capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL)
        if check and r.returncode:
            raise AssertionError(f"airflow {' '.join(map(str, args))} exited "
                                 f"{r.returncode}:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")
        if json_out:
            out = r.stdout
            return json.loads(out[out.index("["):] if "[" in out else out)
        return r

    def start(self, timeout=300):
        """Migrate the database, start the three processes, wait until
        they are healthy; if any of that fails, stop what was started."""
        try:
            self.cli("db", "migrate", timeout=600)
            for name, argv in (("api-server", ["api-server", "-p", str(self.port),
                                               "-H", "127.0.0.1", "-w", "1"]),
                               ("scheduler", ["scheduler"]),
                               ("dag-processor", ["dag-processor"])):
                self.start_process(name, argv)
            self.wait_healthy(timeout)
        except BaseException:
            self.stop(check=False)
            raise
        return self

    def start_process(self, name, argv):
        """Start `airflow ARGV` as @name; one it replaces must have been
        stopped (it is kept, so stop() checks that its processes went)."""
        p = Process(name, [str(self.bin / "airflow"), *argv], self.env,
                    self.root / f"{name}.log")
        if name in self.procs:
            self.replaced.append(self.procs[name])
        self.procs[name] = p.start()
        return p

    def check_alive(self):
        for p in self.procs.values():
            if not p.alive():
                raise AssertionError(f"airflow {p.name} exited with {p.proc.returncode}:\n"
                                     f"{p.log_text()[-4000:]}")

    def wait_healthy(self, timeout=300):
        def healthy():
            self.check_alive()
            h = self.api("GET", "/api/v2/monitor/health")
            return all(h.get(k, {}).get("status") == "healthy"
                       for k in ("metadatabase", "scheduler", "dag_processor"))
        wait(healthy, timeout, "the api-server, scheduler and dag-processor to be healthy",
             interval=1)

    def stop(self, check=True):
        """Stop every process this deployment started, with all of their
        descendants; with @check, AssertionError naming any process of
        theirs still alive afterwards."""
        left = []
        for p in [self.procs[n] for n in ("dag-processor", "scheduler", "api-server")
                  if n in self.procs] + self.replaced:
            left += [f"airflow {p.name}: {x}" for x in p.stop()]
        if check and left:
            raise AssertionError("processes outlived the rig's stop():\n" + "\n".join(left))

    def log(self, name):
        return self.procs[name].log_text()

    # ------------------------------------------------------------- REST API

    def api(self, method, path, body=None, ok=(200, 201, 204)):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        if status not in ok:
            raise AssertionError(f"{method} {path}: HTTP {status}: {raw[:2000]!r}")
        return json.loads(raw) if raw else None

    def dag(self, dag_id):
        return self.api("GET", f"/api/v2/dags/{dag_id}")

    def dags(self, **query):
        q = "&".join(f"{k}={v}" for k, v in {"limit": 1000, **query}.items())
        return {d["dag_id"]: d for d in self.api("GET", f"/api/v2/dags?{q}")["dags"]}

    def import_errors(self):
        return self.api("GET", "/api/v2/importErrors?limit=1000")["import_errors"]

    def bundle_versions(self, dag_id):
        """The DAG's versions as Airflow recorded them, oldest first."""
        r = self.api("GET", f"/api/v2/dags/{dag_id}/dagVersions?limit=100&order_by=version_number")
        return r["dag_versions"]

    def wait_dag(self, dag_id, timeout=120, pred=None):
        """Wait until Airflow lists @dag_id (and @pred(dag) holds)."""
        def found():
            self.check_alive()
            d = self.api("GET", f"/api/v2/dags/{dag_id}", ok=(200, 404))
            if d is None or "dag_id" not in d:
                return None
            return d if pred is None or pred(d) else None
        return wait(found, timeout, f"DAG {dag_id}")

    def trigger(self, dag_id, conf=None):
        r = self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns",
                     {"logical_date": None, "conf": conf or {}})
        return r["dag_run_id"]

    def run(self, dag_id, run_id):
        return self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")

    def wait_run(self, dag_id, run_id, states=("success", "failed"), timeout=180):
        def done():
            self.check_alive()
            r = self.run(dag_id, run_id)
            return r if r["state"] in states else None
        return wait(done, timeout, f"run {run_id} of {dag_id} to be {'/'.join(states)}")

    def task_instances(self, dag_id, run_id):
        r = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        return {t["task_id"]: t for t in r["task_instances"]}

    def wait_task(self, dag_id, run_id, task_id, states, timeout=180):
        def there():
            self.check_alive()
            t = self.task_instances(dag_id, run_id).get(task_id)
            return t if t and t["state"] in states else None
        return wait(there, timeout, f"task {task_id} of {run_id} to be {'/'.join(states)}")

    def xcom(self, dag_id, run_id, task_id, key="return_value"):
        r = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/"
                     f"{task_id}/xcomEntries/{key}?deserialize=true")
        return r["value"]

    def clear_run(self, dag_id, run_id):
        return self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/clear",
                        {"dry_run": False})

    def bundle(self, name):
        return self.api("GET", f"/api/v2/dagBundles/{name}", ok=(200, 404))
