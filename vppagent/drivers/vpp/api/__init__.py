"""VPP's binary API as the driver uses it: the connection, the pinned messages, VPP's error codes
and the typed calls (`calls.py`, the only module that names message fields)."""
