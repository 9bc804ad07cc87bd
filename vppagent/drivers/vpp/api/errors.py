"""VPP's API return values (`retval`) and its "no index" value: the one definition in the agent.

Values and names are `foreach_vnet_api_error` in VPP's `src/vnet/api_errno.h` (`src/vnet/error.h`
in later releases, same numbers). The emulator (vppagent/vppsim) answers with the same values.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final


class ApiError(IntEnum):
    """`VNET_API_ERROR_*` values, as `retval` in replies."""

    UNSPECIFIED = -1
    INVALID_SW_IF_INDEX = -2
    NO_SUCH_FIB = -3
    NO_SUCH_ENTRY = -6
    INVALID_VALUE = -7
    INVALID_VALUE_2 = -8
    UNIMPLEMENTED = -9  # e.g. an rx-mode or queue the device does not have (26.06)
    INVALID_SW_IF_INDEX_2 = -10
    SYSCALL_ERROR_1 = -11
    FEATURE_DISABLED = -30  # e.g. cnat's source-NAT addresses read or deleted before any was set
    INVALID_REGISTRATION = -31
    NO_PATHS_IN_ROUTE = -52
    UNKNOWN_DESTINATION = -54  # a route path through an interface that does not exist (26.06)
    INVALID_SRC_ADDRESS = -57
    INVALID_DST_ADDRESS = -58
    ADDRESS_NOT_FOUND_FOR_INTERFACE = -60
    IP6_NOT_ENABLED = -62
    NO_SUCH_TABLE = -65
    SUBIF_ALREADY_EXISTS = -68
    INVALID_MEMORY_SIZE = -70
    INVALID_INTERFACE = -71
    INVALID_ARGUMENT = -73
    UNEXPECTED_INTF_STATE = -74
    IF_ALREADY_EXISTS = -79
    VALUE_EXIST = -81
    CLASSIFY_TABLE_NOT_FOUND = -91
    ADDRESS_IN_USE = -105
    ENTRY_ALREADY_EXISTS = -116
    UNSUPPORTED = -126
    DUPLICATE_IF_ADDRESS = -127
    ACL_IN_USE_INBOUND = -142
    ACL_IN_USE_OUTBOUND = -143
    ACL_IN_USE_BY_LOOKUP_CONTEXT = -149


OK: Final = 0
# VPP's "~0" in u32 index fields: no interface, no table, "create a new one", "all of them".
NO_INDEX: Final = 0xFFFFFFFF
