"""The device farm: nightly runs over the inventory, their history, and what changed.

``regress.py`` decides, per series, whether tonight's samples differ from the nights before by more than
that series' own night-to-night noise, and which night a change began.
"""
