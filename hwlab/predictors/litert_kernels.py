"""The kernels LiteRT executed for a model, from benchmark_model's op profile, and what they say about fusion.

LiteRT shows no optimised graph to map back onto the model's nodes, as onnxruntime does
(runtime_kernels.py), but benchmark_model's op profiling lists every node it executed
(hwlab.measure.benchmark_model.driver.profiled_graph): TFLite's builtins (``CONV_2D``,
``HARD_SWISH``) or, where XNNPACK took the model, the delegate's node (``TfLiteXNNPackDelegate``)
followed by XNNPACK's own operators (named ``Delegate/<operator>:<i>``). A delegate node is a
container: its operators are the kernels. A delegate node whose operators are not shown hides
them, so such a graph tells nothing.

Fusion is then decided by counting kernels, with no timing at all: a pair is fused when the
chain ran as fewer kernels than its two ops alone (a conv+BN the converter folded, an activation
XNNPACK applies inside the convolution's output loop), and apart when as many. The same rows, placed
on a whole model's ONNX nodes (litert_split.py), are its kernels' times inside the model.
"""

from __future__ import annotations

from typing import Any

from hwlab.measure.benchmark_model.driver import GRAPH_SOURCE

DELEGATED_PREFIX = "Delegate/"  # the name of an operator run inside a delegate node


def is_litert_graph(graph: dict[str, Any]) -> bool:
    """Whether ``graph`` came from benchmark_model's op profile (else from the runner's onnxruntime capture)."""
    return graph.get("source") == GRAPH_SOURCE


def is_delegate_node(node_type: str) -> bool:
    """TfLiteXNNPackDelegate, TfLiteGpuDelegateV2, TfLiteNnapiDelegate...: a delegate's kernel registration."""
    return "delegate" in node_type.lower()


def executed_kernels(graph: dict[str, Any]) -> list[str] | None:
    """The node types of the kernels the runtime ran, in run order; None when the graph cannot tell (it holds
    an error, or a delegate node whose operators are not shown)."""
    if not is_litert_graph(graph) or not isinstance(graph.get("nodes"), list):
        return None
    nodes = graph["nodes"]
    shows_operators = any(str(n["name"]).startswith(DELEGATED_PREFIX) for n in nodes)
    kernels = []
    for node in nodes:
        if is_delegate_node(node["type"]):
            if not shows_operators:
                return None
            continue
        kernels.append(node["type"])
    return kernels


def fused_vote(first: dict[str, Any], second: dict[str, Any], chain: dict[str, Any]) -> bool | None:
    """True when the chain ran as fewer kernels than its ops alone, False when as many, None when the graphs
    cannot tell (one cannot be read, or the chain ran more kernels than both alone)."""
    first_k, second_k, chain_k = (executed_kernels(g) for g in (first, second, chain))
    if not first_k or not second_k or not chain_k:
        return None
    alone, together = len(first_k) + len(second_k), len(chain_k)
    return None if together > alone else together < alone
