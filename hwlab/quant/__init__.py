"""Numeric precisions: what each costs, which a runtime executes, and quantised models to measure them.

``precision.py`` names the precisions (bit widths, and which are deployable); ``onnx_qdq.py`` writes
static int8 ONNX models in the QDQ format; ``boundary.py`` the Quantize/Dequantize models that price a
switch between precisions.
"""
