"""Numeric precisions: what each costs, which a runtime executes, and quantised models to measure them.

``precision.py`` names the precisions (bit widths, which are deployable, which hwlab can write per runtime);
``onnx_qdq.py`` writes static int8 ONNX models in the QDQ format and ``export.py`` makes an OpSpec's from its
fp32 twin; ``boundary.py`` writes the Quantize/Dequantize models that price a switch between precisions;
``space.py`` puts a space at several precisions and reads int8/fp32 back; ``int8_check.py`` is the doctor's
check of whether int8 pays on a device.

The bit-width search (``hwlab qsearch``): ``network.py`` builds the searched networks and describes their
layers as the device sees them; ``fakequant.py`` is the quantisation-aware supernet; ``cost.py`` gives an
assignment's BitOps and its latency composed from measured rows; ``qsearch.py`` scores candidates and holds
the five methods; ``deploy.py`` writes an assignment as a QDQ model and checks it with the runtime;
``job.py`` runs it all and writes the outputs.
"""
