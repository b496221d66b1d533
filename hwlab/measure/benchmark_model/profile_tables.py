"""The per-op tables ``benchmark_model --enable_op_profiling=true`` prints.

Why: they are the only per-op evidence a phone without Python gives, so they are
kept row by row, in the units printed (milliseconds, percent, KB).

Formats (tensorflow/tensorflow and google-ai-edge/LiteRT):

- ``StatsCalculator::GetOutputString`` (``third_party/xla/xla/tsl/util/stats_calculator.cc``,
  earlier ``tensorflow/core/util/stats_calculator.cc``): a ``==== Run Order ====``
  table of every node, ``==== Top by Computation Time ====`` (10 rows), then
  ``Number of nodes executed: N`` and ``==== Summary by node type ====``. A table
  is a header line, one line per row, then an empty line. Columns are
  tab-separated and right-aligned (``HeaderString``/``ColumnString``):
  ``[node type] [first] [avg ms] [%] [cdf%] [mem KB] [times called] [Name]``;
  releases before the move to tsl also have ``[start]`` after ``[node type]``.
  The CSV mode (``--op_profiling_output_mode=csv``) prints
  ``node type, first, avg_ms, %, cdf%, mem KB, times called, name`` instead.
- ``ProfileSummaryDefaultFormatter`` (``tflite/profiling/profile_summary_formatter.cc``):
  the run tables come under ``Operator-wise Profiling Info for Regular Benchmark
  Runs:``, the initialisation ones under ``Profiling Info for Benchmark
  Initialization:``; per graph, ``Primary graph (name: ..) profile:`` and
  ``Subgraph (index: N, name: ..) profile:`` appear only when the model has more
  than one subgraph, and ``Delegate internal:`` introduces a delegate's own ops.
  Each graph ends with ``Timings (microseconds): <Stat>``, ``Memory (bytes): <Stat>``
  and ``N nodes observed``.
- Node names (``tflite/profiling/profile_summarizer.cc``): ``[output tensors]:node
  index`` for an op, ``Delegate/<op>:<i>`` for an op inside a delegate,
  ``<event>/<subgraph>`` for init events such as ``AllocateTensors``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from hwlab.measure.benchmark_model.logtext import RunStats, parse_stat_line, strip_prefix, to_float

RUN_SECTION = "Operator-wise Profiling Info for Regular Benchmark Runs:"
INIT_SECTION = "Profiling Info for Benchmark Initialization:"

_TITLE = re.compile(r"={5,} (.+?) ={5,}")
_PRIMARY = re.compile(r"Primary graph \(name: (.*)\) (?:profile|summary):")
_SUBGRAPH = re.compile(r"Subgraph \(index: (\d+), name: (.*)\) (?:profile|summary):")
_DELEGATE = re.compile(r"Delegate internal:")
_NODES_EXECUTED = re.compile(r"Number of nodes executed: (\d+)")
_NODES_OBSERVED = re.compile(r"(\d+) nodes observed")
_TIMINGS = "Timings (microseconds):"

# Header cell (lower case, brackets removed) -> field name.
_COLUMNS = {
    "node type": "node_type",
    "start": "start_ms",
    "first": "first_ms",
    "avg ms": "avg_ms",
    "avg_ms": "avg_ms",
    "%": "pct",
    "avg %": "pct",
    "cdf%": "cdf_pct",
    "cdf %": "cdf_pct",
    "mem kb": "mem_kb",
    "times called": "times_called",
    "name": "name",
    "count": "count",
}


@dataclass(frozen=True)
class OpRow:
    """One node of a per-node table; ``pct`` is its share of the graph's profiled time."""

    node_type: str
    name: str
    first_ms: float | None
    avg_ms: float | None
    pct: float | None
    cdf_pct: float | None
    mem_kb: float | None
    times_called: int | None
    start_ms: float | None = None  # only in releases that still print [start]


@dataclass(frozen=True)
class NodeTypeRow:
    """One line of ``Summary by node type``: every node of one type added up."""

    node_type: str
    count: int | None
    avg_ms: float | None
    pct: float | None
    cdf_pct: float | None
    mem_kb: float | None
    times_called: int | None


@dataclass(frozen=True)
class ProfileGraph:
    """The tables of one graph: ``primary``, ``subgraph N`` or ``delegate`` (its internal ops)."""

    label: str
    graph_name: str | None
    tables: Mapping[str, tuple[OpRow, ...]]
    by_node_type: tuple[NodeTypeRow, ...]
    nodes_executed: int | None
    timings: RunStats | None
    nodes_observed: int | None

    @property
    def run_order(self) -> tuple[OpRow, ...]:
        return self.tables.get("Run Order", ())

    @property
    def top_by_time(self) -> tuple[OpRow, ...]:
        return self.tables.get("Top by Computation Time", ())


@dataclass(frozen=True)
class OpProfile:
    """One profiling section: ``run`` (regular runs) or ``init`` (interpreter set-up)."""

    phase: str
    graphs: tuple[ProfileGraph, ...]

    def graph(self, label: str) -> ProfileGraph | None:
        return next((g for g in self.graphs if g.label == label), None)

    @property
    def primary(self) -> ProfileGraph | None:
        return self.graph("primary")


@dataclass
class _Table:
    title: str
    columns: list[str] | None = None
    csv: bool = False
    start: int = 0  # index of the first column among the tab-separated fields
    rows: list[dict[str, str]] = field(default_factory=list)


@dataclass
class _Graph:
    label: str = "primary"
    graph_name: str | None = None
    tables: dict[str, tuple[OpRow, ...]] = field(default_factory=dict)
    by_node_type: tuple[NodeTypeRow, ...] = ()
    nodes_executed: int | None = None
    timings: RunStats | None = None
    nodes_observed: int | None = None

    def empty(self) -> bool:
        return not (self.tables or self.by_node_type or self.timings or self.nodes_executed is not None)

    def freeze(self) -> ProfileGraph:
        return ProfileGraph(
            self.label,
            self.graph_name,
            dict(self.tables),
            self.by_node_type,
            self.nodes_executed,
            self.timings,
            self.nodes_observed,
        )


def _header(raw: str, table: _Table) -> bool:
    """Read a table's header line into ``table``; False when the line is not one."""
    if "[" in raw and "\t" in raw:
        cells = [c.strip() for c in raw.split("\t")]
        starts = [i for i, c in enumerate(cells) if c.startswith("[") and c.endswith("]")]
        if not starts:
            return False
        table.start = starts[0]
        table.columns = [_COLUMNS.get(c.strip("[]").lower(), c.strip("[]").lower()) for c in cells[starts[0] :]]
        return "node_type" in table.columns
    message = strip_prefix(raw)
    if message.lower().startswith("node type,"):
        table.csv = True
        table.columns = [_COLUMNS.get(c.strip().lower(), c.strip().lower()) for c in message.split(",")]
        return True
    return False


def _row(raw: str, table: _Table) -> dict[str, str] | None:
    """One row as {column: text}; None when the line does not have the table's shape."""
    assert table.columns is not None
    n = len(table.columns)
    if table.csv:  # a node type may hold ", " (e.g. "Convolution (NHWC, F32)"): split from the right
        cells = strip_prefix(raw).rsplit(", ", n - 1)
    else:
        fields = raw.split("\t")[table.start :]
        cells = fields[: n - 1] + ["\t".join(fields[n - 1 :])] if table.columns[-1] == "name" else fields
    if len(cells) != n:
        return None
    return {col: cell.strip() for col, cell in zip(table.columns, cells, strict=True)}


def _num(cells: Mapping[str, str], key: str) -> float | None:
    text = cells.get(key)
    return None if text is None else to_float(text.rstrip("%"))


def _int(cells: Mapping[str, str], key: str) -> int | None:
    value = _num(cells, key)
    return None if value is None else int(value)


def _op_row(cells: Mapping[str, str]) -> OpRow:
    return OpRow(
        node_type=cells.get("node_type", ""),
        name=cells.get("name", ""),
        first_ms=_num(cells, "first_ms"),
        avg_ms=_num(cells, "avg_ms"),
        pct=_num(cells, "pct"),
        cdf_pct=_num(cells, "cdf_pct"),
        mem_kb=_num(cells, "mem_kb"),
        times_called=_int(cells, "times_called"),
        start_ms=_num(cells, "start_ms"),
    )


def _type_row(cells: Mapping[str, str]) -> NodeTypeRow:
    return NodeTypeRow(
        node_type=cells.get("node_type", ""),
        count=_int(cells, "count"),
        avg_ms=_num(cells, "avg_ms"),
        pct=_num(cells, "pct"),
        cdf_pct=_num(cells, "cdf_pct"),
        mem_kb=_num(cells, "mem_kb"),
        times_called=_int(cells, "times_called"),
    )


def _close(table: _Table, graph: _Graph) -> None:
    if table.columns is None:
        return
    if "name" in table.columns:
        graph.tables[table.title] = tuple(_op_row(r) for r in table.rows)
    else:
        graph.by_node_type = tuple(_type_row(r) for r in table.rows)


def parse_profile_section(phase: str, lines: list[str]) -> OpProfile:
    """Parse the lines that follow a section header (``RUN_SECTION``/``INIT_SECTION``)."""
    graphs: list[ProfileGraph] = []
    graph = _Graph()
    table: _Table | None = None

    def new_graph(label: str, name: str | None) -> None:
        nonlocal graph
        if not graph.empty():
            graphs.append(graph.freeze())
            graph = _Graph()
        graph.label, graph.graph_name = label, name

    for raw in lines:
        message = strip_prefix(raw)
        if table is not None:
            if table.columns is None:
                if _header(raw, table):
                    continue
                table = None  # a title without a header: not a table after all
            elif message and (row := _row(raw, table)) is not None:
                table.rows.append(row)
                continue
            else:
                _close(table, graph)
                table = None
        if found := _TITLE.search(message):
            table = _Table(found.group(1).strip())
        elif found := _PRIMARY.search(message):
            new_graph("primary", found.group(1) or None)
        elif found := _SUBGRAPH.search(message):
            new_graph(f"subgraph {found.group(1)}", found.group(2) or None)
        elif _DELEGATE.search(message):
            new_graph("delegate", None)
        elif found := _NODES_EXECUTED.search(message):
            graph.nodes_executed = int(found.group(1))
        elif _TIMINGS in message:
            graph.timings = parse_stat_line(message[message.index(_TIMINGS) + len(_TIMINGS) :])
        elif found := _NODES_OBSERVED.search(message):
            graph.nodes_observed = int(found.group(1))
    if table is not None:
        _close(table, graph)
    if not graph.empty():
        graphs.append(graph.freeze())
    return OpProfile(phase, tuple(graphs))
