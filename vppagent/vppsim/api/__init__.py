"""Vendored VPP API definitions (``<release>/*.api.json``), trimmed to the messages the emulator serves.

One directory per release (25.10, 26.06).  See ``README.md`` here for provenance and ``vendor.py``
for how they were produced.
"""
