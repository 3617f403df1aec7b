# SPDX-License-Identifier: Apache-2.0
"""Airflow 3 DAG bundle over dagfs: ``dagfs_airflow.DagfsDagBundle``."""

from dagfs_airflow.bundle import DagfsDagBundle

__all__ = ["DagfsDagBundle"]
