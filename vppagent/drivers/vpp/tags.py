"""Tags: how the driver recognises its own objects in VPP, and which workload an interface serves.

VPP hands out ACL and interface indices from pools and reuses them, so indices are never
remembered across connections; after a restart (of VPP or of the agent) the driver re-reads tags.
Tags are `string[64]`: at most 63 characters.

- ACL: `vpa1:acl:<digest>`, the digest of the rules (`api.types.AclContent.digest`). The digest is
  a hint for people reading `show acl-plugin acl`; the driver recomputes it from the dumped rules
  and never trusts a tag for content.
- Pod interface: `vpa1:wl:<orchestrator>/<workload>/<endpoint>` when that fits, else
  `vpa1:wl#<sha256 of the same text>` (a Kubernetes pod name alone may be 253 characters).
  Felix's WorkloadEndpointUpdate is matched to the interface by this tag, not by name.
"""

from __future__ import annotations

import hashlib

from vppagent.state.model import WorkloadKey

PREFIX = "vpa1:"
ACL_PREFIX = f"{PREFIX}acl:"
WORKLOAD_PREFIX = f"{PREFIX}wl"
GATEWAY_TAG = f"{PREFIX}gw"  # the pod gateway loopback (pods/ip.py)
MAX_TAG = 63


def acl_tag(digest: str) -> str:
    return f"{ACL_PREFIX}{digest}"


def is_our_acl(tag: str) -> bool:
    return tag.startswith(ACL_PREFIX)


def workload_tag(key: WorkloadKey) -> str:
    text = f"{key.orchestrator_id}/{key.workload_id}/{key.endpoint_id}"
    tag = f"{WORKLOAD_PREFIX}:{text}"
    if len(tag) <= MAX_TAG:
        return tag
    return f"{WORKLOAD_PREFIX}#{hashlib.sha256(text.encode()).hexdigest()[:MAX_TAG - len(WORKLOAD_PREFIX) - 1]}"


def is_workload_tag(tag: str) -> bool:
    return tag.startswith(WORKLOAD_PREFIX)
