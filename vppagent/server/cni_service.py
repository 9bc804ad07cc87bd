"""Calico's CNI dataplane API (`cni.CniDataplane` Add/Del) served on --cni-socket.

Calico's CNI plugin calls it when configured with `"dataplane_options": {"type": "grpc",
"socket": "unix:///var/run/calico/cni-server.sock"}`. The request is validated first; the attachment
itself is the active driver's (kernel veth, or a VPP tap / af_packet).
"""

from __future__ import annotations

import logging
from concurrent import futures
from pathlib import Path

import grpc

from vppagent.gen.cni import cni_pb2, cni_pb2_grpc
from vppagent.pods.spec import PodSpecError, parse_add, parse_del
from vppagent.pods.veth import AttachError
from vppagent.server.core import AgentCore
from vppagent.server.grpc_service import listen_private

log = logging.getLogger(__name__)


class CniService(cni_pb2_grpc.CniDataplaneServicer):
    def __init__(self, core: AgentCore) -> None:
        self.core = core

    def Add(self, request: cni_pb2.AddRequest, context: grpc.ServicerContext) -> cni_pb2.AddReply:
        try:
            spec = parse_add(request)
            with self.core.lock:
                attachment = self.core.driver.attach_pod(spec)
        except (PodSpecError, AttachError) as exc:
            log.warning("CNI Add refused: %s", exc)
            return cni_pb2.AddReply(successful=False, error_message=str(exc))
        except Exception as exc:  # report, never crash the server thread
            log.exception("CNI Add failed")
            return cni_pb2.AddReply(successful=False, error_message=f"internal error: {exc}")
        log.info("CNI Add %s: %s", spec.workload, attachment.host_ifname)
        return cni_pb2.AddReply(successful=True, host_interface_name=attachment.host_ifname,
                                container_mac=attachment.container_mac)

    def Del(self, request: cni_pb2.DelRequest, context: grpc.ServicerContext) -> cni_pb2.DelReply:
        try:
            delete = parse_del(request)
            with self.core.lock:
                removed = self.core.driver.detach_pod(delete)
        except (PodSpecError, AttachError) as exc:
            return cni_pb2.DelReply(successful=False, error_message=str(exc))
        except Exception as exc:
            log.exception("CNI Del failed")
            return cni_pb2.DelReply(successful=False, error_message=f"internal error: {exc}")
        log.info("CNI Del %s %s: removed %s", request.netns, request.interface_name, removed)
        return cni_pb2.DelReply(successful=True)  # deleting what is already gone succeeds (CNI rule)


def serve_cni(core: AgentCore, path: Path) -> grpc.Server:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="cni"))
    cni_pb2_grpc.add_CniDataplaneServicer_to_server(CniService(core), server)  # type: ignore[no-untyped-call]
    listen_private(server, path)
    return server
