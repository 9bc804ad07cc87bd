"""VPP's binary API as the driver uses it: the connection, the pinned messages, VPP's error codes
and the typed requests (`calls.py` one at a time, `batches.py` pipelined, with the message fields
both send in `fields.py`: the only modules that name message fields)."""
