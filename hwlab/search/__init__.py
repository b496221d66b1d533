"""Hardware-constrained SPOS search: space, supernet, training, evolution, latency sources, architecture files."""
