"""Latency predictors: fusion rules measured per device, graphs split into kernels, per-kernel
regressors, a model-level overhead term, stored safely in predictors/<device>/<backend>/."""
