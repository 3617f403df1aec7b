# SPDX-License-Identifier: Apache-2.0
"""Seeded generator of awkward source trees for the equality tests.

gen_tree(root, seed, files) writes at least @files regular files with:
random contents and sizes (empty files, small text, a few MiB-sized
blobs, repeated contents), permission bits including executable ones,
relative symlinks inside the tree (to files, directories and other
links), empty directories, names with spaces, unicode and leading dashes,
255-byte names (ASCII and multi-byte UTF-8), a 30-level nesting, and
their own mtimes (nanoseconds). It also writes symlinks that point
outside the tree, which dagfs must leave out; their relative paths are
returned in TreeInfo.outside.

Run as a script to write one: tree_gen.py DIR [--seed N] [--files N].
"""

import argparse
import os
import pathlib
import random
from dataclasses import dataclass, field

FILE_MODES = (0o644, 0o644, 0o644, 0o755, 0o755, 0o600, 0o700, 0o444,
              0o555, 0o640, 0o750)
DIR_MODES = (0o755, 0o755, 0o750, 0o700, 0o555)

ODD_NAMES = [
    "my dag.py", " leading space.py", "trailing space .sql", "two  spaces",
    "-rf", "--help", "-n.py", "- dash space", "café.py", "naïve_dag.py",
    "日本語のDAG.py", "δοκιμή.yaml", "emoji_🚀.py", "Ünïcödé dir",
    "tab\tname.txt", "quote'name.py", 'dq"name.py', "semi;colon.sql",
    "hash#name.py", "percent%41.py", "back\\slash.py", "brace{x}.py",
    "star*.py", "question?.py", "UPPER.PY", "dot.", "..double", ".hidden.py",
    "a,comma.py", "equals=sign.yaml", "at@sign", "ampersand&.py",
]


@dataclass
class TreeInfo:
    root: pathlib.Path
    files: int = 0
    dirs: int = 0
    links: int = 0
    bytes: int = 0
    outside: list = field(default_factory=list)   # rel paths left out
    long_names: list = field(default_factory=list)
    deep_file: str = ""


def _content(rng, i):
    kind = rng.random()
    if i % 40 == 0:
        return b""
    if kind < 0.70:                       # small text, like a DAG file
        n = rng.randint(1, 6000)
        words = [b"import", b"airflow", b"dag", b"task", b"def", b"\n",
                 b"    ", b"=", b"'s3://bucket/key'", b"# comment\n"]
        out = bytearray()
        while len(out) < n:
            out += rng.choice(words) + b" "
        return bytes(out[:n])
    if kind < 0.95:                       # binary-ish, up to 64 KiB
        return rng.randbytes(rng.randint(1, 64 * 1024))
    if kind < 0.995:                       # duplicates share one blob
        return b"duplicate content\n" * 100
    return rng.randbytes(rng.randint(1, 3 * 1024 * 1024))


def _mtime(rng):
    # 2001..2025, with a nanosecond part
    return rng.randint(978307200, 1735689600) * 10**9 + rng.randint(0, 10**9 - 1)


class _Gen:
    def __init__(self, root, seed):
        self.rng = random.Random(seed)
        self.info = TreeInfo(pathlib.Path(root))
        self.dirs = []          # (path, mode) for chmod at the end
        self.mtimes = []        # (path, ns)

    def mkdir(self, rel):
        p = self.info.root / rel
        p.mkdir(parents=True, exist_ok=True)
        self.dirs.append((p, self.rng.choice(DIR_MODES)))
        self.info.dirs += 1
        return p

    def write(self, rel, data=None, mode=None):
        p = self.info.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if data is None:
            data = _content(self.rng, self.info.files)
        p.write_bytes(data)
        os.chmod(p, mode if mode is not None else self.rng.choice(FILE_MODES))
        self.mtimes.append((p, _mtime(self.rng)))
        self.info.files += 1
        self.info.bytes += len(data)
        return p

    def link(self, rel, target, outside=False):
        p = self.info.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, p)
        if outside:
            self.info.outside.append(str(rel))
        else:
            self.info.links += 1

    def finish(self):
        for p, ns in self.mtimes:
            os.utime(p, ns=(ns, ns), follow_symlinks=False)
        # deepest first so a read-only parent does not block its children
        for p, mode in sorted(self.dirs, key=lambda d: -len(str(d[0]))):
            os.chmod(p, mode)
        return self.info


def _bulk(g, files):
    teams = ["team_a", "team b", "-team-c", "équipe_d", "team_e"]
    n = 0
    while n < files:
        team = g.rng.choice(teams)
        sub = f"{team}/sub{g.rng.randint(0, 15):02d}"
        if g.rng.random() < 0.3:
            sub += f"/inner{g.rng.randint(0, 4)}"
        ext = g.rng.choice([".py", ".py", ".py", ".sql", ".yaml", ".json", ""])
        g.write(f"{sub}/file_{n:05d}{ext}")
        n += 1


def _odd(g):
    g.mkdir("odd")
    for name in ODD_NAMES:
        g.write(f"odd/{name}")
        g.mkdir(f"odd/dir {name}")
        g.write(f"odd/dir {name}/inside.py")
    ascii255 = "L" * 252 + ".py"
    utf255 = "é" * 126 + "xyz"               # 252 + 3 = 255 bytes
    for n in (ascii255, utf255):
        assert len(n.encode()) == 255, n
        g.write(f"long/{n}")
        g.info.long_names.append(f"long/{n}")
    g.mkdir("long/" + "D" * 255)
    g.write("long/" + "D" * 255 + "/" + "F" * 255)
    deep = "/".join(f"level{i:02d}" for i in range(30))
    g.mkdir(deep)
    g.info.deep_file = f"{deep}/deep_dag.py"
    g.write(g.info.deep_file, b"from airflow import DAG\n", 0o644)


def _empties(g):
    for d in ("empty", "empty nested/a/b/c", "odd/empty dir", "-empty"):
        g.mkdir(d)
    for i in range(10):
        g.write(f"empties/empty_{i}", b"", g.rng.choice(FILE_MODES))


def _links(g):
    g.write("links/target.py", b"print('target')\n", 0o644)
    g.mkdir("links/tdir")
    g.write("links/tdir/in_dir.py", b"x = 1\n", 0o755)
    g.link("links/to_file", "target.py")
    g.link("links/to_dir", "tdir")
    g.link("links/to_link", "to_file")
    g.link("links/up_and_back", "../links/target.py")
    g.link("links/sub/parent_file", "../target.py")
    g.link("links/to deep", "../" + g.info.deep_file)
    g.link("links/café link", "tdir/in_dir.py")
    g.link("links/-dash link", "./target.py")
    g.link("odd/dot_link", ".")
    # left out: they resolve outside the source root
    g.link("links/escape_rel", "../../outside_file", outside=True)
    g.link("links/escape_deep", "tdir/../../../etc/passwd", outside=True)
    g.link("links/escape_abs", "/etc/passwd", outside=True)
    g.link("links/escape_abs_dir", "/tmp", outside=True)


def gen_tree(root, seed=1, files=2100):
    """Write the tree under @root (created) and return its TreeInfo."""
    g = _Gen(root, seed)
    g.info.root.mkdir(parents=True, exist_ok=True)
    _odd(g)
    _empties(g)
    _links(g)
    _bulk(g, max(0, files - g.info.files))
    return g.finish()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--files", type=int, default=2100)
    a = ap.parse_args()
    info = gen_tree(a.dir, a.seed, a.files)
    print(f"{info.files} files, {info.dirs} dirs, {info.links} links, "
          f"{info.bytes} bytes, left out: {info.outside}")


if __name__ == "__main__":
    main()
