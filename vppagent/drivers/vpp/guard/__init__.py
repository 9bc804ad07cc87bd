"""The source guard: egress anti-spoofing for pods, as a classifier on each pod interface's input.

sources.py (pure): which sources an endpoint may send from, and how a guard table matches them;
read.py: guard chains read back from VPP; guards.py: making, updating, attaching and deleting
them. docs/vpp-driver.md, "Source guard (anti-spoofing)", has the design and what was measured.
"""
