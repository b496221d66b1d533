"""hwlab_runner: the program that measures model latency on the device itself.

It needs only Python >= 3.8, numpy and the runtime a job asks for, so this
folder can be copied to a board or a phone and run as ``python3 -m hwlab_runner``.
It never imports ``hwlab``: the host and the device share nothing but the JSON
described in PROTOCOL.md.
"""

PROTOCOL_VERSION = 2  # 2: warm-up 0.05 s and at most 3 s per model by default (1: 0.1 s and 5 s)
__version__ = "0.1.0"
