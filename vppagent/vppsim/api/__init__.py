"""Vendored VPP 25.10 API definitions (``*.api.json``), trimmed to the messages vppagent uses.

See ``README.md`` in this directory for provenance and ``vendor.py`` for how they were produced.
"""
