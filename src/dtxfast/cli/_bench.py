"""``dtx bench <area>``: run the pytest-benchmark suite of one area and print ratios.

The suite lives in the repository's ``bench/`` folder, installed as ``dtxfast._benchsuite``; each
area is one file ``bench_<area>.py``. Every benchmark records in ``extra_info`` its ``impl``
(``dtxfast``, ``dtxfast-<variant>``, ``dtxfast-python``, a peer's package name, ``floor-<what>``
or ``naive-<what>``), ``size``, ``unit``, ``per`` (how many elements one timed call handles) and
``threads``, and optionally ``sample`` (a peer ran fewer elements than ``size``), ``ref`` (the
dtxfast row doing the same work, default ``dtxfast``) and ``note``; so the table and the JSON rows
(the form of the house style) are computed the same way for every area.

Ratios are taken between rows of equal threads: a row is compared with its ``ref`` row of the same
group, size and ``threads`` ("same-thread"), and, beside it, with the ``ref`` row that ran on the
most threads ("all-core"). The JSON carries the rows and the ratios computed from them, so every
ratio can be recomputed from the rows alone.

Examples
--------
>>> rows = [
...     {"group": "g", "impl": "dtxfast", "size": 8, "unit": "us/elem", "value": 1.0, "threads": 2},
...     {"group": "g", "impl": "dtxfast", "size": 8, "unit": "us/elem", "value": 1.8, "threads": 1},
...     {"group": "g", "impl": "phe", "size": 8, "unit": "us/elem", "value": 90.0, "threads": 1},
... ]
>>> [(r["impl"], r["threads"], r["same_threads"], r["all_cores"]) for r in ratios(rows)]
[('phe', 1, 50.0, 90.0)]
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
from rich.markup import escape
from rich.table import Table

from .._backend import num_threads
from ..errors import BackendUnavailable, ParameterError
from . import app

__all__ = ["bench", "ratios", "rows_from_pytest_benchmark"]

#: units where a larger value is better; every other unit is a cost
_HIGHER_IS_BETTER = ("MiB/s", "msgs/s", "ops/s", "entries/s", "proofs/s", "ids/s")


def _suite_dir() -> Path:
    override = os.environ.get("DTX_BENCH_DIR")
    if override:
        return Path(override)
    try:
        return Path(str(resources.files("dtxfast._benchsuite")))
    except ModuleNotFoundError as exc:  # pragma: no cover - broken install
        raise ParameterError("the benchmark suite is not installed (dtxfast._benchsuite)") from exc


def _areas(suite: Path) -> list[str]:
    # bench_storage_net.py is the area storage-net
    return sorted(p.stem[len("bench_") :].replace("_", "-") for p in suite.glob("bench_*.py"))


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
    """Turn pytest-benchmark's JSON into the house rows ``{group, impl, size, unit, value, threads}``.

    Raises
    ------
    ParameterError
        If two rows share group, size, impl and threads (a ratio against them would be ambiguous).
    """
    rows = []
    seen: set[tuple[Any, ...]] = set()
    for b in data.get("benchmarks", []):
        extra = b.get("extra_info", {})
        row = {
            "group": b.get("group") or b["name"],
            "impl": extra.get("impl", b["name"]),
            "size": extra.get("size"),
            "unit": extra.get("unit", "us/elem"),
            "value": round(_value(b["stats"], extra), 6),
            "threads": extra.get("threads"),
        }
        for name in ("sample", "ref", "note"):
            if name in extra:
                row[name] = extra[name]
        key = (row["group"], row["size"], row["impl"], row["threads"])
        if key in seen:
            raise ParameterError(f"two benchmark rows are {row['impl']} on {row['threads']} threads in "
                                 f"{row['group']} at size {row['size']}: give one another impl name")
        seen.add(key)
        rows.append(row)
    return rows


#: units of recorded values that do not depend on threads (bytes on the wire)
_THREAD_FREE = ("bytes/sample", "MiB/party")


def _ratio(row: dict[str, Any], ref: dict[str, Any] | None) -> float | None:
    """How many times faster the reference is than ``row`` (None without a reference)."""
    if ref is None or not row["value"] or not ref["value"]:
        return None
    if row["unit"] in _HIGHER_IS_BETTER:
        return round(ref["value"] / row["value"], 4)
    return round(row["value"] / ref["value"], 4)


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ratio of every row to its ``ref`` row: on the same threads, and on the most threads.

    A row's ``ref`` is the dtxfast row doing the same work (``dtxfast`` unless the row names
    another). ``same_threads`` (``all_cores``) is how many times faster the ``ref`` row of the
    same group and size on the same number of threads (on the most threads) is; None when there
    is no such row. Rows in thread-free units (bytes) compare with the ``ref`` row whatever its
    threads. The ``ref`` rows themselves get no entry.
    """
    index = {(r["group"], r["size"], r["impl"], r.get("threads")): r for r in rows}
    widest: dict[tuple[Any, Any, str], dict[str, Any]] = {}
    for r in rows:
        k = (r["group"], r["size"], r["impl"])
        if k not in widest or (r.get("threads") or 0) > (widest[k].get("threads") or 0):
            widest[k] = r
    out = []
    for r in rows:
        ref_impl = r.get("ref", "dtxfast")
        if r["impl"] == ref_impl:
            continue
        wide = widest.get((r["group"], r["size"], ref_impl))
        same = wide if r["unit"] in _THREAD_FREE else index.get((r["group"], r["size"], ref_impl, r.get("threads")))
        out.append({"group": r["group"], "size": r["size"], "impl": r["impl"], "threads": r.get("threads"),
                    "ref": ref_impl, "same_threads": _ratio(r, same), "all_cores": _ratio(r, wide),
                    "all_cores_threads": None if wide is None else wide.get("threads")})
    return out


def _fmt(ratio: float | None) -> str:
    if ratio is None:
        return ""
    return f"{ratio:.2f}×" if ratio >= 0.1 else f"{ratio:.2g}×"


def _table(area: str, rows: list[dict[str, Any]]) -> Table:
    table = Table(
        title=f"dtx bench {area}",
        caption="× same thr: how many times faster the row's dtxfast reference (ref, default dtxfast) is "
        "than that row, both on the row's threads; × all cores: the same against the reference on the "
        "most threads; sample: the row ran that many of size elements",
    )
    for col, justify in (("group", "left"), ("size", "right"), ("impl", "left"), ("thr", "right"),
                         ("value", "right"), ("unit", "left"), ("× same thr", "right"),
                         ("× all cores", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    by_row = {(q["group"], q["size"], q["impl"], q["threads"]): q for q in ratios(rows)}
    last = None
    for r in sorted(rows, key=lambda r: (r["group"], r["size"] or 0, r["value"])):
        key = (r["group"], r["size"])
        if last is not None and key != last:
            table.add_section()
        last = key
        impl = r["impl"]
        if r.get("ref"):
            impl += f" (vs {r['ref']})"
        if r.get("sample"):
            impl += f" [sample {r['sample']}]"
        if r.get("note"):
            impl += f" [{r['note']}]"
        impl = escape(impl)  # notes hold brackets: not rich markup
        q = by_row.get((r["group"], r["size"], r["impl"], r.get("threads")), {})
        table.add_row(r["group"], str(r["size"]), impl, str(r.get("threads", "?")), f"{r['value']:.4g}",
                      r["unit"], _fmt(q.get("same_threads")), _fmt(q.get("all_cores")))
    return table


class _Progress:
    """pytest plugin that advances a rich progress bar as benchmarks finish."""

    def __init__(self, console: Console) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=console, transient=True,
                                 disable=not console.is_terminal)  # off a terminal it would leave a blank line
        self.task = self.progress.add_task("benchmarking", total=None)
        self.failures: list[str] = []
        self.omitted: list[str] = []

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
        if report.skipped and isinstance(report.longrepr, tuple):  # rows omitted, with the reason
            self.omitted.append(f"{report.nodeid.split('::')[-1]}: {report.longrepr[2].removeprefix('Skipped: ')}")


def _area_help() -> str:
    try:
        return "Benchmark area: " + ", ".join(_areas(_suite_dir())) + "."
    except Exception:  # pragma: no cover - a broken install still shows the help
        return "Benchmark area, e.g. paillier."


_AREA_HELP = _area_help()


@app.command()
def bench(
    area: str = typer.Argument(..., help=_AREA_HELP),
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
    console = Console(file=sys.stderr)  # bound now: pytest's own stderr is captured below
    if quick:
        os.environ["DTX_BENCH_QUICK"] = "1"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        args = [
            str(suite / f"bench_{area.replace('-', '_')}.py"), "-q", "-p", "no:cacheprovider", "--rootdir", str(suite),
            "-o", "python_files=bench_*.py", "-o", "addopts=", "--benchmark-json", str(out),
            "--benchmark-disable-gc", "-W", "ignore", "--benchmark-storage", f"file://{Path(tmp) / 'storage'}",
        ]
        if select:
            args += ["-k", select]
        plugin = _Progress(console)
        captured = io.StringIO()
        with plugin.progress, contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
            code = pytest.main(args, plugins=[plugin])
        if code == pytest.ExitCode.NO_TESTS_COLLECTED:
            raise ParameterError(f"-k {select!r} matches no benchmark of the area {area!r}")
        if code == pytest.ExitCode.USAGE_ERROR and select:
            raise ParameterError(f"-k {select!r} is not a pytest -k expression (names joined by and, or, not, "
                                 "parentheses)")
        if code not in (0,) or not out.exists():
            for line in plugin.failures:
                console.print(f"[red]failed[/red] {line}")
            if not plugin.failures:
                console.print(captured.getvalue()[-4000:])
            raise typer.Exit(1)
        data = json.loads(out.read_text())
    for line in plugin.omitted:
        console.print(f"[yellow]omitted[/yellow] {line}")
    rows = rows_from_pytest_benchmark(data)
    bits = next((b["extra_info"]["bits"] for b in data["benchmarks"] if "bits" in b.get("extra_info", {})), None)
    result = {"area": area, "bits": bits, "cores": num_threads(), "rows": rows, "ratios": ratios(rows)}
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        screen = Console()
        if not screen.is_terminal:
            screen = Console(width=150)
        screen.print(_table(area, rows))
