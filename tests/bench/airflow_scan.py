#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""An Airflow-like scan of a DAG folder, as the dag-processor does it.

Follows Airflow 2's airflow.utils.file (find_path_from_directory with
the regexp .airflowignore syntax, list_py_file_paths, might_contain_dag)
without importing Airflow:

  * os.walk(followlinks=True); each .airflowignore found applies its
    regexps (re.search on the path relative to the ignore file's folder)
    to that folder and everything below it; directories are pruned;
  * each file: is_file() (stat), .py suffix or zipfile.is_zipfile();
  * might_contain_dag: the file's bytes, lowercased, contain b"dag" and
    b"airflow";
  * the mtime of each candidate (the processor sorts by modified time);
  * compile() of every .py file found (the parse, without executing).

With skip_isatty (--skip-isatty), every open() passes an explicit buffer
size, which makes CPython <= 3.13 skip the isatty() (ioctl TCGETS) it
otherwise asks of every file it opens: an EMULATION of Python 3.14's
open(), which skips it for regular files (gh-90102), for a machine
without a 3.14 (Debian 12 has none).

Usage: airflow_scan.py DIR [--no-compile] [--skip-isatty] [--list]
"""

import argparse
import io
import os
import re
import time
import zipfile

IGNORE = ".airflowignore"
SKIP_ISATTY = False  # see the module docstring


def _open(path, mode="rb"):
    if SKIP_ISATTY:
        return open(path, mode, buffering=io.DEFAULT_BUFFER_SIZE)
    return open(path, mode)


def _is_zipfile(path):
    if not SKIP_ISATTY:
        return zipfile.is_zipfile(path)
    try:
        with _open(path) as f:
            return zipfile.is_zipfile(f)
    except OSError:
        return False


def _ignore_rules(root, base_rules):
    path = os.path.join(root, IGNORE)
    if not os.path.isfile(path):
        return base_rules
    rules = list(base_rules)
    with _open(path, "r") as f:
        for line in f.read().split("\n"):
            line = re.sub(r"\s*#.*", "", line)
            if not line:
                continue
            try:
                rules.append((re.compile(line), root))
            except re.error:
                continue
    return rules


def _ignored(path, rules):
    return any(rx.search(os.path.relpath(path, base)) for rx, base in rules)


def find_paths(top):
    """Yield the files Airflow would consider under @top."""
    rules_by_dir = {}
    for root, dirs, files in os.walk(top, followlinks=True):
        rules = rules_by_dir.get(os.path.realpath(root), [])
        rules = _ignore_rules(root, rules)
        dirs[:] = [d for d in dirs
                   if not _ignored(os.path.join(root, d), rules)]
        for d in dirs:
            real = os.path.realpath(os.path.join(root, d))
            if real in rules_by_dir:
                raise RuntimeError(f"symlink loop at {os.path.join(root, d)}")
            rules_by_dir[real] = list(rules)
        for name in files:
            if name == IGNORE:
                continue
            p = os.path.join(root, name)
            if not _ignored(p, rules):
                yield p


def might_contain_dag(path):
    """Airflow's default heuristic; also returns the bytes read."""
    if _is_zipfile(path):
        return True, b""
    with _open(path) as f:
        content = f.read()
    low = content.lower()
    return (b"dag" in low and b"airflow" in low), content


def scan(top, compile_py=True):
    """Scan @top; returns a dict of counts and the elapsed seconds."""
    t0 = time.perf_counter()
    st = {"walked": 0, "candidates": 0, "dag_files": 0, "compiled": 0,
          "bytes": 0, "errors": 0, "dags": []}
    for p in find_paths(top):
        st["walked"] += 1
        if not os.path.isfile(p):
            continue
        if not p.endswith(".py") and not _is_zipfile(p):
            continue
        st["candidates"] += 1
        os.path.getmtime(p)
        is_dag, content = might_contain_dag(p)
        st["bytes"] += len(content)
        if is_dag:
            st["dag_files"] += 1
            st["dags"].append(os.path.relpath(p, top))
        if compile_py and p.endswith(".py"):
            try:
                compile(content, p, "exec", dont_inherit=True)
                st["compiled"] += 1
            except (SyntaxError, ValueError):
                st["errors"] += 1
    st["seconds"] = time.perf_counter() - t0
    return st


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--skip-isatty", action="store_true",
                    help="emulate Python 3.14's open() (no isatty)")
    ap.add_argument("--list", action="store_true",
                    help="print each file that may contain a DAG")
    a = ap.parse_args()
    global SKIP_ISATTY
    SKIP_ISATTY = a.skip_isatty
    st = scan(a.dir, not a.no_compile)
    if a.list:
        for d in sorted(st["dags"]):
            print(d)
    print(f"{st['walked']} files walked, {st['candidates']} Python files, "
          f"{st['dag_files']} may contain DAGs, {st['compiled']} compiled, "
          f"{st['errors']} syntax errors, {st['bytes']} bytes read "
          f"in {st['seconds']:.3f}s")
    return 1 if st["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
