"""The benchmark_model log parser on recorded outputs, old and new.

Where each format comes from (repository, path):

- ``fixtures/tf22_no_percentiles.txt``: a TensorFlow 2.2-era binary, everything on
  stderr without a prefix (tensorflow/tensorflow
  ``tensorflow/lite/tools/benchmark/logging.h``); ``BenchmarkModel::LogParams``
  logging every parameter and ``Stat<int64_t>`` lines without percentiles
  (``tensorflow/lite/tools/benchmark/benchmark_model.cc`` at
  140b37d45b343b0bc3ab2ce7d49a0f3ae369c828), ``BenchmarkTfLiteModel::LogParams``
  with ``Allow fp16 : [0]``-style lines (``benchmark_tflite_model.cc`` of that time),
  ``Peak memory footprint (MB)``.
- ``fixtures/litert_op_profiling.txt``: a current LiteRT binary (google-ai-edge/LiteRT
  ``tflite/tools/benchmark/benchmark_model.cc``: ``StatWithPercentiles``, only the
  flags given logged, ``Memory footprint delta``; ``benchmark_tflite_model.cc``;
  ``benchmark_main.cc``), ``INFO: `` prefixes (tensorflow/tensorflow
  ``tensorflow/lite/tools/logging.h``), ``LOG_TOOL_PARAM`` (``tensorflow/lite/tools/tool_params.h``),
  op profiling from ``tflite/profiling/profile_summary_formatter.cc`` (+ ``.h``,
  ``WriteOutput``), ``tflite/profiling/profile_summarizer.cc`` (node names) and
  tensorflow/tensorflow ``third_party/xla/xla/tsl/util/stats_calculator.cc``
  (``HeaderString``, ``ColumnString``, ``GetStatsByNodeType``: node type width 40,
  no ``[start]``) and ``stats_calculator.h`` (``Stat``, ``StatWithPercentiles``).
- ``fixtures/litert_load_failure.txt``: ``LoadModel`` failing
  (``benchmark_tflite_model.cc``) and ``Benchmarking failed.`` (``benchmark_main.cc``).
- The ``[start]`` table below: tensorflow/tensorflow ``tensorflow/core/util/stats_calculator.cc``
  before the move to tsl (node type width 24).
"""

from __future__ import annotations

import pytest

from hwlab.errors import BenchmarkParseError
from hwlab.measure.benchmark_model import RunStats, parse_benchmark_output
from hwlab.measure.benchmark_model.logtext import parse_stat_line, strip_prefix
from hwlab.measure.benchmark_model.parse import InferenceTimings, MemoryFootprint, RunPlan
from hwlab.measure.benchmark_model.profile_tables import OpRow, parse_profile_section

GRAPH = "/data/local/tmp/hwlab/models/3f2a.tflite"


def test_old_release_without_percentiles(log_text):
    out = parse_benchmark_output(log_text("tf22_no_percentiles", graph=GRAPH, threads=1))
    assert out.graph == GRAPH
    assert (out.num_threads, out.num_runs, out.warmup_runs) == (1, 20, 10)
    assert (out.min_secs, out.max_secs, out.warmup_min_secs) == (0.2, 3.0, 0.05)
    assert out.flag("use_xnnpack") is False and out.flag("enable_op_profiling") is False
    assert out.params["Use legacy nnapi"] == "0"  # unknown descriptions keep their text
    assert out.warmup_plan == RunPlan(10, 0.05, 3.0)
    assert out.regular_plan == RunPlan(20, 0.2, 3.0)
    assert out.warmup == RunStats(
        count=42, first_us=2893, curr_us=1187, min_us=1166, max_us=2893, avg_us=1208.93, std_us=265
    )
    assert out.regular == RunStats(
        count=166, first_us=1192, curr_us=1201, min_us=1159, max_us=1428, avg_us=1204.31, std_us=38
    )
    assert out.regular.median_us is None and out.regular.p5_us is None
    assert out.timings == InferenceTimings(3578, 2893, 1208.93, 1204.31)
    assert out.init_ms == 3.578 and out.model_size_mb == 0.018876
    assert out.memory == MemoryFootprint("max_rss", 2.84375, 3.10547)
    assert out.op_profile is None and out.init_profile is None and out.version is None


def test_litert_release_with_percentiles_and_op_profiling(log_text):
    out = parse_benchmark_output(log_text("litert_op_profiling", graph=GRAPH, threads=4))
    assert (out.graph, out.num_threads) == (GRAPH, 4)
    assert out.flag("enable_op_profiling") is True and out.flag("use_xnnpack") is True
    assert out.params["verbose"] == "0" and out.params["signature_to_run_for"] == ""
    assert out.warmup == RunStats(123, 1873, 402, 371, 1873, 406.41, 136, 376, 398, 451)
    assert out.regular == RunStats(497, 412, 398, 369, 655, 402.318, 31, 377, 397, 441)
    assert out.timings == InferenceTimings(4016, 1873, 406.41, 402.318)
    assert out.memory == MemoryFootprint("delta", 3.0625, 3.44141)
    assert (out.init_ms, out.model_size_mb) == (4.016, 0.062384)

    run = out.op_profile
    assert run is not None and run.phase == "run" and [g.label for g in run.graphs] == ["primary"]
    primary = run.primary
    assert primary is not None
    assert [r.node_type for r in primary.run_order] == [
        "TfLiteXNNPackDelegate",
        "Convolution (NHWC, F32) IGEMM",
        "Convolution (NHWC, F32) DWConv",
        "Convolution (NHWC, F32) GEMM",
        "ARG_MAX",
    ]
    assert primary.run_order[0] == OpRow(
        "TfLiteXNNPackDelegate", "[model/re_lu_2/Relu6]:4", 0.356, 0.335, 50.199, 50.199, 0.0, 1
    )
    assert primary.run_order[2].name == "Delegate/Convolution (NHWC, F32) DWConv:1"
    assert primary.run_order[4] == OpRow("ARG_MAX", "[model/argmax]:3", 0.024, 0.021, 3.153, 100.0, 0.0, 1)
    assert [r.avg_ms for r in primary.top_by_time] == [0.335, 0.151, 0.098, 0.062, 0.021]
    assert primary.top_by_time[2].cdf_pct == 87.518
    assert primary.nodes_executed == 5 and primary.nodes_observed == 5
    assert [(t.node_type, t.count, t.avg_ms, t.pct, t.cdf_pct) for t in primary.by_node_type[:2]] == [
        ("TfLiteXNNPackDelegate", 1, 0.335, 50.225, 50.225),
        ("Convolution (NHWC, F32) IGEMM", 1, 0.151, 22.639, 72.864),
    ]
    assert primary.timings == RunStats(497, 717, 661, 640, 1204, 668.166, 41)

    init = out.init_profile
    assert init is not None and init.phase == "init" and init.primary is not None
    assert [(r.name, r.avg_ms, r.mem_kb) for r in init.primary.run_order] == [
        ("ModifyGraphWithDelegate/0", 3.112, 1124.0),
        ("AllocateTensors/0", 0.512, 260.0),
    ]
    assert init.primary.timings == RunStats(1, 3624, 3624, 3624, 3624, 3624, 0, 3624, 3624, 3624, True)


def test_failed_load_is_a_parse_error_quoting_the_last_lines(log_text):
    with pytest.raises(BenchmarkParseError) as err:
        parse_benchmark_output(log_text("litert_load_failure", graph=GRAPH))
    message = str(err.value)
    assert "no regular-run statistics" in message
    assert message.rstrip().endswith(
        f"ERROR: Could not open '{GRAPH}'.\nERROR: Failed to load model {GRAPH}\nERROR: Benchmarking failed."
    )


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "no regular-run statistics"),
        ("Segmentation fault\n", "no regular-run statistics"),
        (
            "INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate"
            " if exceeding 150 seconds.\nINFO: count=3 first=9 curr=8 min=8 max=9 avg=8.33333 std=0\n\n"
            "INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate"
            " if exceeding 150 seconds.\n",
            "only the warm-up statistics",
        ),
    ],
)
def test_output_cut_before_the_regular_runs(text, why):
    with pytest.raises(BenchmarkParseError, match=why):
        parse_benchmark_output(text)


def test_log_prefixes_of_every_kind_are_seen_through(log_text):
    """The same run read from logcat (threadtime) and from a timestamped copy."""
    plain = parse_benchmark_output(log_text("tf22_no_percentiles"))
    logcat = "\n".join(
        f"05-02 10:11:12.345  4242  4242 I tflite  : {line}" for line in log_text("tf22_no_percentiles").splitlines()
    )
    stamped = "\n".join(
        f"2025-05-02 10:11:12.345 INFO: {line}" for line in log_text("tf22_no_percentiles").splitlines()
    )
    for text in (logcat, stamped):
        out = parse_benchmark_output(text)
        assert (out.regular, out.warmup, out.timings, out.params) == (
            plain.regular,
            plain.warmup,
            plain.timings,
            plain.params,
        )
    assert strip_prefix("WARN: Failed to get the input model file size.") == "Failed to get the input model file size."


def test_op_tables_read_through_logcat_prefixes(log_text):
    text = log_text("litert_op_profiling")
    logcat = "\n".join(f"05-02 10:11:12.345  4242  4242 I tflite  : {line}" for line in text.splitlines())
    assert parse_benchmark_output(logcat).op_profile == parse_benchmark_output(text).op_profile


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("count=0", RunStats(0)),
        ("count=1 curr=812", RunStats(1, 812, 812, 812, 812, 812, 0, 812, 812, 812, True)),
        ("count=20 curr=640(all same)", RunStats(20, 640, 640, 640, 640, 640, 0, 640, 640, 640, True)),
        (
            "count=20 curr=640(all same) p5=640 median=640 p95=640",
            RunStats(20, 640, 640, 640, 640, 640, 0, 640, 640, 640, True),
        ),
        (
            "count=12 first=1243112 curr=1239987 min=1231004 max=1250113 avg=1.24017e+06 std=5871",
            RunStats(12, 1243112, 1239987, 1231004, 1250113, 1240170.0, 5871),
        ),
        (
            "count=2 first=5 curr=7 min=5 max=7 avg=6 std=1 p5=5 median=7 p95=7",
            RunStats(2, 5, 7, 5, 7, 6, 1, 5, 7, 7),
        ),
    ],
)
def test_every_form_of_a_stat_line(line, expected):
    assert parse_stat_line(f"INFO: {line}") == expected


def test_old_tables_with_a_start_column():
    section = (
        "============================== Run Order ==============================\n"
        "\t             [node type]\t          [start]\t  [first]\t [avg ms]\t     [%]\t  [cdf%]"
        "\t  [mem KB]\t[times called]\t[Name]\n"
        "\t                 CONV_2D\t            0.000\t    1.103\t    1.021\t 84.523%\t 84.523%"
        "\t     0.000\t        1\t[conv2d/Relu]:0\n"
        "\t       DEPTHWISE_CONV_2D\t            1.022\t    0.201\t    0.187\t 15.477%\t100.000%"
        "\t     0.000\t        1\t[depthwise/Relu6, extra]:1\n"
        "\n"
        "Number of nodes executed: 2\n"
    )
    graph = parse_profile_section("run", section.splitlines()).primary
    assert graph is not None and graph.nodes_executed == 2
    assert graph.run_order == (
        OpRow("CONV_2D", "[conv2d/Relu]:0", 1.103, 1.021, 84.523, 84.523, 0.0, 1, start_ms=0.0),
        OpRow("DEPTHWISE_CONV_2D", "[depthwise/Relu6, extra]:1", 0.201, 0.187, 15.477, 100.0, 0.0, 1, 1.022),
    )


def test_subgraphs_delegate_internals_and_csv_tables():
    """GenerateReport's per-graph labels, and the CSV formatter's rows (type may hold ", ")."""
    section = (
        "Primary graph (name: main) profile:\n"
        "============================== Run Order ==============================\n"
        "node type, first, avg_ms, %, cdf%, mem KB, times called, name\n"
        "Convolution (NHWC, F32) IGEMM, 0.2, 0.15, 75%, 75%, 0, 1, Delegate/Convolution (NHWC\t F32) IGEMM:0\n"
        "WHILE, 0.06, 0.05, 25%, 100%, 0, 1, [out]:1\n"
        "\n"
        "Timings (microseconds): count=10 first=260 curr=200 min=199 max=260 avg=206.1 std=18\n"
        "Subgraph (index: 1, name: body) profile:\n"
        "============================== Run Order ==============================\n"
        "node type, first, avg_ms, %, cdf%, mem KB, times called, name\n"
        "ADD, 0.011, 0.01, 100%, 100%, 0, 3, [x]:0\n"
        "\n"
        "Subgraph (index: 1, name: body) Timings (microseconds): count=10 curr=30(all same)\n"
        "Delegate internal: \n"
        "============================== Run Order ==============================\n"
        "node type, first, avg_ms, %, cdf%, mem KB, times called, name\n"
        "DelegateOpInvoke, 0.1, 0.09, 100%, 100%, 0, 1, Delegate/Conv:0\n"
        "\n"
    )
    profile = parse_profile_section("run", section.splitlines())
    assert [(g.label, g.graph_name) for g in profile.graphs] == [
        ("primary", "main"),
        ("subgraph 1", "body"),
        ("delegate", None),
    ]
    primary, body, delegate = profile.graphs
    assert primary.run_order[0] == OpRow(
        "Convolution (NHWC, F32) IGEMM", "Delegate/Convolution (NHWC\t F32) IGEMM:0", 0.2, 0.15, 75.0, 75.0, 0.0, 1
    )
    assert primary.timings is not None and primary.timings.avg_us == 206.1
    assert body.run_order[0].times_called == 3 and body.timings == RunStats(10, *[30] * 5, 0, 30, 30, 30, True)
    assert delegate.run_order[0].node_type == "DelegateOpInvoke"
