"""``dtx bench <area>``: run the pytest-benchmark suite of one area and print ratios.

The suite lives in the repository's ``bench/`` folder, installed as ``dtxfast._benchsuite``; each
area is one file ``bench_<area>.py``. Every benchmark records in ``extra_info`` its ``impl``
(``dtxfast``, ``dtxfast-python``, a peer's package name, or ``floor-<what>``), ``size``,
``unit`` and ``per`` (how many elements one timed call handles), so the table and the JSON rows
(the form of the house style) are computed the same way for every area.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from .._backend import num_threads
from ..errors import BackendUnavailable, ParameterError
from . import app

__all__ = ["bench", "rows_from_pytest_benchmark"]

#: units where a larger value is better; every other unit is a cost
_HIGHER_IS_BETTER = ("MiB/s", "ops/s", "entries/s", "proofs/s", "ids/s")


def _suite_dir() -> Path:
    override = os.environ.get("DTX_BENCH_DIR")
    if override:
        return Path(override)
    try:
        return Path(str(resources.files("dtxfast._benchsuite")))
    except ModuleNotFoundError as exc:  # pragma: no cover - broken install
        raise ParameterError("the benchmark suite is not installed (dtxfast._benchsuite)") from exc


def _areas(suite: Path) -> list[str]:
    return sorted(p.stem[len("bench_") :] for p in suite.glob("bench_*.py"))


def _value(stats: dict[str, float], extra: dict[str, Any]) -> float:
    if "value" in extra:  # a derived metric recorded by the benchmark itself (e.g. bytes/sample)
        return float(extra["value"])
    unit = extra.get("unit", "us/elem")
    median = float(stats["median"])
    per = float(extra.get("per") or extra.get("size") or 1)
    if unit == "us/elem":
        return median / per * 1e6
    if unit == "ms/elem":
        return median / per * 1e3
    if unit == "s":
        return median
    if unit == "MiB/s":
        return float(extra["mib"]) / median
    if unit in _HIGHER_IS_BETTER:
        return per / median
    raise ParameterError(f"benchmark unit {unit!r} is not known")


def rows_from_pytest_benchmark(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Turn pytest-benchmark's JSON into the house rows ``{group, impl, size, unit, value}``."""
    rows = []
    for b in data.get("benchmarks", []):
        extra = b.get("extra_info", {})
        row = {
            "group": b.get("group") or b["name"],
            "impl": extra.get("impl", b["name"]),
            "size": extra.get("size"),
            "unit": extra.get("unit", "us/elem"),
            "value": round(_value(b["stats"], extra), 6),
        }
        for key in ("threads", "note"):
            if key in extra:
                row[key] = extra[key]
        rows.append(row)
    return rows


def _speedup(row: dict[str, Any], ref: float | None) -> str:
    if ref is None or row["value"] == 0 or ref == 0:
        return ""
    if row["unit"] in _HIGHER_IS_BETTER:
        ratio = ref / row["value"]
    else:
        ratio = row["value"] / ref
    return f"{ratio:.2f}×" if ratio >= 0.1 else f"{ratio:.2g}×"


def _table(area: str, rows: list[dict[str, Any]]) -> Table:
    cores = num_threads()
    table = Table(
        title=f"dtx bench {area}",
        caption="dtxfast ×: how many times faster dtxfast (all cores) is than that row; "
        "1-thr ×: the same for dtxfast on one thread; *: against dtxfast's per-element cost at "
        "the nearest size (that row ran on fewer elements)",
    )
    for col, justify in (("group", "left"), ("size", "right"), ("impl", "left"), ("value", "right"),
                         ("unit", "left"), ("dtxfast ×", "right"), ("1-thr ×", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    best: dict[tuple[Any, Any], float] = {}
    single: dict[tuple[Any, Any], float] = {}
    for r in rows:
        if r["impl"] != "dtxfast":
            continue
        key = (r["group"], r["size"])
        if r.get("threads", cores) == 1 and cores > 1:
            single[key] = r["value"]
        else:
            best[key] = r["value"]
    last = None
    for r in sorted(rows, key=lambda r: (r["group"], r["size"] or 0, r["value"])):
        key = (r["group"], r["size"])
        if last is not None and key != last:
            table.add_section()
        last = key
        impl = r["impl"] + (f" ({r['threads']} thr)" if r.get("threads") else "")
        if r.get("note"):
            impl += f" [{r['note']}]"
        is_ref = r["impl"] == "dtxfast"
        ref, mark = best.get(key), ""
        if ref is None and r["unit"] in _PER_ELEMENT:
            ref, mark = _nearest(best, r["group"], r["size"]), "*"
        all_cores = _speedup(r, ref)
        table.add_row(r["group"], str(r["size"]), impl, f"{r['value']:.4g}", r["unit"],
                      "" if is_ref and r["value"] == best.get(key) else all_cores + (mark if all_cores else ""),
                      "" if is_ref and r["value"] == single.get(key) else _speedup(r, single.get(key)))
    return table


#: per-element costs, comparable across sizes (a slow baseline may run on fewer elements)
_PER_ELEMENT = ("us/elem", "ms/elem", "bytes/sample")


def _nearest(best: dict[tuple[Any, Any], float], group: str, size: Any) -> float | None:
    """dtxfast's value in ``group`` at the size closest to ``size`` (None if it has none)."""
    sizes = [s for g, s in best if g == group and isinstance(s, (int, float))]
    if not sizes or not isinstance(size, (int, float)):
        return None
    return best[(group, min(sizes, key=lambda s: abs(s - size)))]


class _Progress:
    """pytest plugin that advances a rich progress bar as benchmarks finish."""

    def __init__(self, console: Console) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=console, transient=True)
        self.task = self.progress.add_task("benchmarking", total=None)
        self.failures: list[str] = []

    def pytest_collection_finish(self, session: Any) -> None:
        self.progress.update(self.task, total=len(session.items))

    def pytest_runtest_logstart(self, nodeid: str, location: Any) -> None:
        self.progress.update(self.task, description=nodeid.split("::")[-1][:60])

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.when == "call" or (report.when == "setup" and not report.passed):
            self.progress.advance(self.task)
        if report.failed:
            msg = str(report.longrepr).strip().splitlines()
            self.failures.append(f"{report.nodeid}: {msg[-1] if msg else 'failed'}")


@app.command()
def bench(
    area: str = typer.Argument(..., help="Benchmark area, e.g. paillier."),
    quick: bool = typer.Option(False, "--quick", help="Smallest sizes only (a smoke check in seconds)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object to stdout instead of a table."),
    select: str = typer.Option("", "-k", help="Only benchmarks matching this pytest -k expression."),
) -> None:
    """Run the benchmarks of one AREA and print per-element costs and ratios."""
    try:
        import pytest
        import pytest_benchmark  # noqa: F401
    except ImportError as exc:
        raise BackendUnavailable("dtx bench needs the bench extra: pip install 'dtxfast[bench]'") from exc
    suite = _suite_dir()
    areas = _areas(suite)
    if area not in areas:
        raise ParameterError(f"unknown benchmark area {area!r}; known: {', '.join(areas) or 'none'}")
    console = Console(stderr=True)
    if quick:
        os.environ["DTX_BENCH_QUICK"] = "1"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        args = [
            str(suite / f"bench_{area}.py"), "-q", "-p", "no:cacheprovider", "--rootdir", str(suite),
            "-o", "python_files=bench_*.py", "-o", "addopts=", "--benchmark-json", str(out),
            "--benchmark-disable-gc", "-W", "ignore",
        ]
        if select:
            args += ["-k", select]
        plugin = _Progress(console)
        captured = io.StringIO()
        with plugin.progress, contextlib.redirect_stdout(captured):
            code = pytest.main(args, plugins=[plugin])
        if code not in (0,) or not out.exists():
            for line in plugin.failures:
                console.print(f"[red]failed[/red] {line}")
            if not plugin.failures:
                console.print(captured.getvalue()[-4000:])
            raise typer.Exit(1)
        data = json.loads(out.read_text())
    rows = rows_from_pytest_benchmark(data)
    bits = next((b["extra_info"]["bits"] for b in data["benchmarks"] if "bits" in b.get("extra_info", {})), None)
    result = {"area": area, "bits": bits, "cores": num_threads(), "rows": rows}
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        screen = Console()
        if not screen.is_terminal:
            screen = Console(width=150)
        screen.print(_table(area, rows))
