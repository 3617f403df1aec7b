# SPDX-License-Identifier: Apache-2.0
"""Real git servers on loopback for tests and benchmarks, each in its own
temporary directory on a free port, started and stopped by the caller:

  GitDaemon  git daemon (git://)
  GitHttp    lighttpd + git http-backend (smart HTTP) behind basic auth
             (mod_auth + mod_authn_file, plain user file)
  GitSshd    OpenSSH sshd with its own host key, a user key in its own
             AuthorizedKeysFile, and a known_hosts file for clients

All three serve the bare repositories under one directory (`repos`), so a
test pushes with plain `git push` to the path and fetches over any server.
`Repo` is a work tree with a bare remote there, for making commits.

Use as a library (`from git_servers import ...`) or as pytest fixtures:
`pytest_plugins = ["git_servers"]` with tests/rigs on sys.path gives the
session fixtures git_repos, git_daemon, git_http, git_sshd and the
function fixture git_repo (a fresh Repo).

Needs: git, lighttpd, openssh-server (sshd, ssh-keygen). Runs as root.
"""

import itertools
import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import time

GIT_HTTP_BACKEND = "/usr/lib/git-core/git-http-backend"
_seq = itertools.count()


def free_port():
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc=None, timeout=10.0, what="server"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"{what} not listening on {port} after {timeout}s")


def run(*argv, cwd=None, env=None, check=True):
    e = dict(os.environ)
    e.update({"GIT_CONFIG_NOSYSTEM": "1", "HOME": str(cwd or "/tmp")})
    if env:
        e.update(env)
    return subprocess.run([str(a) for a in argv], cwd=cwd, env=e, check=check,
                          capture_output=True, text=True)


class Repo:
    """A work tree with a bare remote `<repos>/<name>.git`.

    write()/symlink()/remove() change the work tree; commit() commits
    everything (at a given committer time if @when) and pushes.
    """

    def __init__(self, repos, name=None, branch="main"):
        self.name = name or f"r{os.getpid()}-{next(_seq)}"
        self.repos = pathlib.Path(repos)
        self.bare = self.repos / f"{self.name}.git"
        self.work = self.repos / ".work" / self.name
        self.branch = branch
        run("git", "init", "-q", "--bare", "-b", branch, self.bare)
        run("git", "config", "uploadpack.allowReachableSHA1InWant", "true",
            cwd=self.bare)
        self.work.mkdir(parents=True)
        self.git("init", "-q", "-b", branch)
        self.git("config", "user.email", "t@example.com")
        self.git("config", "user.name", "test")
        self.git("config", "core.fileMode", "true")
        self.git("remote", "add", "origin", str(self.bare))

    def git(self, *args, env=None, check=True):
        return run("git", *args, cwd=self.work, env=env, check=check)

    def write(self, rel, data, mode=0o644):
        p = self.work / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if os.path.islink(p):
            p.unlink()
        p.write_bytes(data if isinstance(data, bytes) else data.encode())
        p.chmod(mode)
        return p

    def symlink(self, rel, target):
        p = self.work / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if os.path.lexists(p):
            p.unlink()
        os.symlink(target, p)

    def remove(self, rel):
        p = self.work / rel
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()

    def commit(self, msg="change", when=None, push=True, force=False):
        """Commit all changes; returns the new commit id."""
        env = {}
        if when is not None:
            env = {"GIT_COMMITTER_DATE": f"{int(when)} +0000",
                   "GIT_AUTHOR_DATE": f"{int(when)} +0000"}
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", msg, env=env)
        if push:
            self.push(force)
        return self.head()

    def push(self, force=False, ref=None):
        self.git("push", "-q", *(["-f"] if force else []), "origin",
                 f"HEAD:refs/heads/{ref or self.branch}")

    def head(self, what="HEAD"):
        return self.git("rev-parse", what).stdout.strip()

    def tag(self, name, annotated=True, push=True):
        if annotated:
            self.git("tag", "-f", "-a", name, "-m", name)
        else:
            self.git("tag", "-f", name)
        if push:
            self.git("push", "-q", "-f", "origin", f"refs/tags/{name}")

    def reset_hard(self, rev):
        self.git("reset", "-q", "--hard", rev)

    def archive(self, dest, rev="HEAD", subpath=None):
        """Extract `git archive` of @rev (optionally a sub-path) to @dest."""
        dest = pathlib.Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        tree = f"{rev}:{subpath}" if subpath else rev
        tar = subprocess.run(["git", "-c", "tar.umask=0022", "archive",
                              "--format=tar", tree],
                             cwd=self.work, check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-p", "-C", str(dest)], input=tar.stdout,
                       check=True)
        return dest


class _Server:
    """A server process in @root that can be stopped and started again on
    the same port (remote down / remote back)."""

    name = "server"

    def __init__(self, root, repos):
        self.root = pathlib.Path(root)
        self.repos = pathlib.Path(repos)
        self.port = free_port()
        self.proc = None
        self.log = self.root / f"{self.name}.log"

    def argv(self):
        raise NotImplementedError

    def start(self):
        self._log = open(self.log, "ab")
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=self._log,
                                     cwd=self.root, start_new_session=True)
        wait_port(self.port, self.proc, what=self.name)
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self._log.close()
        self.proc = None

    def log_text(self):
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""


class GitDaemon(_Server):
    name = "git-daemon"

    def argv(self):
        return ["git", "daemon", "--reuseaddr", "--export-all",
                f"--base-path={self.repos}", "--listen=127.0.0.1",
                f"--port={self.port}", str(self.repos)]

    def url(self, repo):
        return f"git://127.0.0.1:{self.port}/{repo.name}.git"


class GitHttp(_Server):
    """Smart HTTP with basic auth: user `dagfs`, password in
    self.password (also in self.password_file); or user x-access-token
    with self.token (self.token_file), as GitHub takes tokens."""

    name = "lighttpd"
    user = "dagfs"

    def __init__(self, root, repos):
        super().__init__(root, repos)
        self.password = "s3cret-" + os.urandom(6).hex()
        self.password_file = self.root / "http-password"
        self.password_file.write_text(self.password + "\n")
        self.password_file.chmod(0o600)
        self.token = "tok-" + os.urandom(8).hex()
        self.token_file = self.root / "http-token"
        self.token_file.write_text(self.token + "\n")
        (self.root / "www").mkdir(exist_ok=True)
        (self.root / "users").write_text(f"{self.user}:{self.password}\n"
                                         f"x-access-token:{self.token}\n")
        self.conf = self.root / "lighttpd.conf"
        self.conf.write_text(f"""
server.modules = ("mod_alias", "mod_setenv", "mod_cgi", "mod_auth",
                  "mod_authn_file")
server.document-root = "{self.root}/www"
server.bind = "127.0.0.1"
server.port = {self.port}
server.errorlog = "{self.root}/lighttpd-error.log"
server.max-request-size = 0
alias.url = ("/git" => "{GIT_HTTP_BACKEND}")
$HTTP["url"] =~ "^/git" {{
    cgi.assign = ("" => "")
    setenv.add-environment = ("GIT_PROJECT_ROOT" => "{self.repos}",
                              "GIT_HTTP_EXPORT_ALL" => "1")
    auth.backend = "plain"
    auth.backend.plain.userfile = "{self.root}/users"
    auth.require = ("" => ("method" => "basic", "realm" => "git",
                           "require" => "valid-user"))
}}
""")

    def argv(self):
        return ["lighttpd", "-D", "-f", str(self.conf)]

    def url(self, repo):
        return f"http://127.0.0.1:{self.port}/git/{repo.name}.git"


def _keygen(path, passphrase=""):
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", "dagfs",
        "-f", path)
    return pathlib.Path(path)


class GitSshd(_Server):
    """sshd on loopback: root logs in with self.user_key only; clients
    trust self.known_hosts ([127.0.0.1]:PORT with the host key).
    Also made: self.other_known_hosts (a different key for the same host:
    a "changed host key"), self.empty_known_hosts, self.wrong_key (a user
    key not authorised), self.pass_key + self.pass_file (a key with a
    passphrase, authorised)."""

    name = "sshd"

    def __init__(self, root, repos):
        super().__init__(root, repos)
        r = self.root
        self.host_key = _keygen(r / "ssh_host_ed25519_key")
        self.user_key = _keygen(r / "id_user")
        self.wrong_key = _keygen(r / "id_wrong")
        self.pass_file = r / "passphrase"
        self.pass_file.write_text("correct horse\n")
        self.pass_key = _keygen(r / "id_pass", "correct horse")
        other = _keygen(r / "other_host_key")
        (r / "authorized_keys").write_text(
            (r / "id_user.pub").read_text() + (r / "id_pass.pub").read_text())
        self.known_hosts = self._kh("known_hosts", self.host_key)
        self.other_known_hosts = self._kh("known_hosts.other", other)
        self.empty_known_hosts = r / "known_hosts.empty"
        self.empty_known_hosts.write_text("[127.0.0.1]:1 " + " ".join(
            (r / "other_host_key.pub").read_text().split()[:2]) + "\n")
        self.conf = r / "sshd_config"
        self.conf.write_text(f"""
ListenAddress 127.0.0.1
HostKey {self.host_key}
PidFile {r}/sshd.pid
AuthorizedKeysFile {r}/authorized_keys
StrictModes no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PrintMotd no
""")
        os.makedirs("/run/sshd", exist_ok=True)

    def _kh(self, name, key):
        pub = pathlib.Path(str(key) + ".pub").read_text().split()
        p = self.root / name
        p.write_text(f"[127.0.0.1]:{self.port} {pub[0]} {pub[1]}\n")
        return p

    def argv(self):
        return ["/usr/sbin/sshd", "-f", str(self.conf), "-D", "-e",
                "-p", str(self.port)]

    def url(self, repo):
        return f"ssh://root@127.0.0.1:{self.port}{repo.bare}"


class Silent:
    """A TCP listener on loopback that accepts and never answers: a remote
    that hangs (a dead proxy, a stuck server)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]

    def url(self, scheme="git"):
        return f"{scheme}://127.0.0.1:{self.port}/silent.git"

    def close(self):
        self.sock.close()


class Servers:
    """All three servers over one repos directory in a temporary root."""

    def __init__(self, root=None):
        self.root = pathlib.Path(root or tempfile.mkdtemp(prefix="dagfs-git-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        self.repos = self.root / "repos"
        self.repos.mkdir(exist_ok=True)
        self.started = []

    def _make(self, cls):
        d = self.root / cls.name
        d.mkdir(exist_ok=True)
        s = cls(d, self.repos).start()
        self.started.append(s)
        return s

    def daemon(self):
        return self._make(GitDaemon)

    def http(self):
        return self._make(GitHttp)

    def sshd(self):
        return self._make(GitSshd)

    def repo(self, name=None):
        return Repo(self.repos, name)

    def close(self):
        for s in self.started:
            s.stop()
        shutil.rmtree(self.root, ignore_errors=True)


# ------------------------------------------------------------ fixtures

try:
    import pytest
except ImportError:  # used as a plain library (benchmarks)
    pytest = None

if pytest is not None:
    def _need(*tools):
        for t in tools:
            if not shutil.which(t) and not os.path.exists(t):
                msg = f"{t} is not installed"
                if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
                    pytest.fail(f"CI=true and {msg}", pytrace=False)
                pytest.skip(msg)

    @pytest.fixture(scope="session")
    def git_servers():
        _need("git")
        s = Servers()
        yield s
        s.close()

    @pytest.fixture(scope="session")
    def git_daemon(git_servers):
        return git_servers.daemon()

    @pytest.fixture(scope="session")
    def git_http(git_servers):
        _need("lighttpd", GIT_HTTP_BACKEND)
        return git_servers.http()

    @pytest.fixture(scope="session")
    def git_sshd(git_servers):
        _need("/usr/sbin/sshd", "ssh-keygen")
        return git_servers.sshd()

    @pytest.fixture
    def git_repo(git_servers):
        return git_servers.repo()
