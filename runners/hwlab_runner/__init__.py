"""hwlab_runner: the program that measures model latency on the device itself.

It needs only Python >= 3.8, numpy and the runtime a job asks for, so this
folder can be copied to a board or a phone and run as ``python3 -m hwlab_runner``.
It never imports ``hwlab``: the host and the device share nothing but the JSON
described in PROTOCOL.md.
"""

# 4: a model may name input data, measured call by call over it (a latency distribution);
# 3: models measured in interleaved rounds with anchors; 2: new warm-up and stop defaults
PROTOCOL_VERSION = 4
__version__ = "0.1.0"
