"""``meta.json`` of a run directory: defined with the run-directory contract, re-exported."""

from __future__ import annotations

from chaos.rundir.meta import ParamValue, RunMeta, read_meta, write_meta

__all__ = ["ParamValue", "RunMeta", "read_meta", "write_meta"]
