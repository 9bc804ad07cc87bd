"""The emulated VPP: every subsystem's state, the message dispatch table, and the CLI subset."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

from vppagent.drivers.vpp.api.errors import OK, ApiError
from vppagent.vppsim.acl import AclPlugin
from vppagent.vppsim.classify import Classifier
from vppagent.vppsim.cnat import Cnat
from vppagent.vppsim.codec import ApiDefinitions
from vppagent.vppsim.handlers import Handler, Reply, Request, retval_reply
from vppagent.vppsim.interfaces import Interface, InterfaceTable
from vppagent.vppsim.iplink import IpLinks
from vppagent.vppsim.packet import Direction, Packet, Verdict
from vppagent.vppsim.proxy import Proxies
from vppagent.vppsim.release import Release, release
from vppagent.vppsim.routes import Fib
from vppagent.vppsim.rxmode import RxQueues

# show_version's build fields: VPP prints its build host and time there; the emulator says what it is.
BUILD_DATE = "vppsim"


@dataclass
class EventSubscription:
    pid: int


@dataclass
class PendingEvent:
    client_index: int
    reply: Reply


@dataclass
class SimConfig:
    """Host properties the emulated VPP sees."""

    vhost_net: bool = True  # /dev/vhost-net present (tap creation works)


@dataclass
class SimState:
    """One emulated VPP instance's state.  Not thread-safe: callers hold :attr:`lock`."""

    definitions: ApiDefinitions
    config: SimConfig = field(default_factory=SimConfig)
    release: Release = field(default_factory=release)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def __post_init__(self) -> None:
        self.interfaces = InterfaceTable(vhost_net_available=lambda: self.config.vhost_net,
                                         ip_table_exists=lambda is_ip6, table_id: (is_ip6, table_id) in self.fib.tables)
        self.acl = AclPlugin(self.definitions, self.interfaces)
        self.classifier = Classifier(self.interfaces)
        self.fib = Fib(self.interfaces, neighbours=lambda: self.ip_links.neighbors.keys())
        self.cnat = Cnat(self.release.cnat_active_flag, self.interfaces)
        self.proxies = Proxies(self.interfaces, self.fib)
        self.ip_links = IpLinks(self.interfaces, ip6_needs_ethernet=self.release.ip6_enable_needs_ethernet)
        self.interfaces.on_deleted(self.ip_links.on_interface_deleted)
        self.rx_queues = RxQueues(self.interfaces)
        self.interfaces.on_deleted(self.rx_queues.on_interface_deleted)
        self.interfaces.on_deleted(self.acl.on_interface_deleted)
        self.interfaces.on_deleted(self.classifier.on_interface_deleted)
        self.interfaces.on_deleted(self.cnat.on_interface_deleted)
        self.interfaces.on_deleted(self.proxies.on_interface_deleted)
        self.interfaces.on_event(self._interface_event)
        self.event_subscriptions: dict[int, EventSubscription] = {}
        self.pending_events: list[PendingEvent] = []
        self.handlers: dict[str, Handler] = {
            "control_ping": self.control_ping,
            "memclnt_keepalive": lambda request: retval_reply("memclnt_keepalive_reply", OK),
            "get_api_json": self.get_api_json,
            "api_versions": self.api_versions,
            "get_first_msg_id": self.get_first_msg_id,
            "show_version": self.show_version,
            "cli_inband": self.cli_inband,
            "want_interface_events": self.want_interface_events,
            **self.interfaces.handlers(),
            **self.acl.handlers(),
            **self.classifier.handlers(),
            **self.fib.handlers(),
            **self.ip_links.handlers(),
            **self.rx_queues.handlers(),
            **self.cnat.handlers(),
            **self.proxies.handlers(),
        }
        self.pre_decode_checks = self.acl.pre_decode_checks()

    # -- core messages ----------------------------------------------------------------------------
    def control_ping(self, request: Request) -> list[Reply]:
        return retval_reply("control_ping_reply", OK, vpe_pid=os.getpid())

    def get_api_json(self, request: Request) -> list[Reply]:
        return retval_reply("get_api_json_reply", OK, json=self.definitions.api_json_text())

    def api_versions(self, request: Request) -> list[Reply]:
        versions = [{"major": m.version[0], "minor": m.version[1], "patch": m.version[2], "name": m.name}
                    for m in self.definitions.modules]
        return retval_reply("api_versions_reply", OK, count=len(versions), api_versions=versions)

    def get_first_msg_id(self, request: Request) -> list[Reply]:
        for module in self.definitions.modules:
            if request.fields["name"] == f"{module.name}_{module.vl_api_version:08x}":
                first = self.definitions.id_by_name[module.message_names[0]]
                return retval_reply("get_first_msg_id_reply", OK, first_msg_id=first)
        return retval_reply("get_first_msg_id_reply", ApiError.INVALID_VALUE, first_msg_id=0xFFFF)

    def show_version(self, request: Request) -> list[Reply]:
        return retval_reply("show_version_reply", OK, program="vpe", version=self.release.version,
                            build_date=BUILD_DATE, build_directory="")

    def cli_inband(self, request: Request) -> list[Reply]:
        return retval_reply("cli_inband_reply", OK, reply=self.run_cli(request.fields["cmd"]))

    def run_cli(self, command: str) -> str:
        """The few CLI commands tests use; anything else answers like VPP's parser does."""
        words = command.split()
        if words == ["show", "version"]:
            return f"vpp v{self.release.version} built by vppsim on vppsim at {BUILD_DATE}\n"
        if words[:3] == ["clear", "acl-plugin", "sessions"]:
            self.acl.session_table.clear_round()  # (one round of VPP's cleaner, as the CLI's clear is)
            return ""
        if words[:3] == ["set", "acl-plugin", "reclassify-sessions"] and len(words) == 4 and words[3].isdigit():
            self.acl.reclassify_sessions = int(words[3]) != 0
            return ""
        if words[:3] == ["show", "acl-plugin", "sessions"]:
            adds, dels = self.acl.session_table.adds, self.acl.session_table.dels
            lines = [f"Sessions total: add {adds} - del {dels} = {adds - dels}"]  # as acl.c prints them
            lines += [f"sw_if_index {index}: {len(keys)} sessions"
                      for index, keys in sorted(self.acl.sessions.items())]
            lines.append(f"Reclassify sessions: {int(self.acl.reclassify_sessions)}")  # as acl.c prints it
            return "\n".join(lines) + "\n"
        if words[:3] == ["show", "acl-plugin", "acl"]:
            return "".join(f"acl-index {index} count {len(acl.rules)} tag {{{acl.tag}}}\n"
                           for index, acl in self.acl.acls.items())
        if words[:2] == ["show", "interface"]:
            return "".join(f"{i.name:<24}{i.sw_if_index:>8}{'up' if i.admin_up else 'down':>8}\n"
                           for i in self.interfaces.all())
        return f"unknown input `{command}'\n"

    # -- interface events -------------------------------------------------------------------------
    def want_interface_events(self, request: Request) -> list[Reply]:
        # The pub/sub handler refuses a second enable and a disable without registration.
        subscribed = request.client_index in self.event_subscriptions
        if bool(request.fields["enable_disable"]) == subscribed:
            return retval_reply("want_interface_events_reply", ApiError.INVALID_REGISTRATION)
        if subscribed:
            del self.event_subscriptions[request.client_index]
        else:
            self.event_subscriptions[request.client_index] = EventSubscription(request.fields["pid"])
        return retval_reply("want_interface_events_reply", OK)

    def _interface_event(self, interface: Interface, deleted: bool) -> None:
        for client_index, subscription in self.event_subscriptions.items():
            self.pending_events.append(PendingEvent(client_index, ("sw_interface_event", {
                "client_index": client_index, "pid": subscription.pid,
                "sw_if_index": interface.sw_if_index, "flags": 0 if deleted else interface.flags,
                "deleted": deleted})))

    def forget_client(self, client_index: int) -> None:
        self.event_subscriptions.pop(client_index, None)

    def take_events(self) -> list[PendingEvent]:
        events, self.pending_events = self.pending_events, []
        return events

    # -- dataplane --------------------------------------------------------------------------------
    def evaluate(self, sw_if_index: int, direction: Direction, packet: Packet) -> Verdict:
        """Run ``packet`` through the interface's features in ``direction``: ACL plugin, then classifier
        (on input VPP runs acl-plugin-in-ip4-fa before ip4-inacl, `show interface features` on 26.06).
        Both sit on the ip4-unicast / ip6-unicast input arcs: a multicast destination (IPv6 neighbour
        and router solicitations, DAD) takes the multicast arc, which neither is on."""
        if not self.interfaces.exists(sw_if_index):
            return Verdict(False, f"no interface {sw_if_index}")
        if direction is Direction.INPUT and packet.dst.is_multicast:
            return Verdict(True, "multicast: no input feature on its arc")
        acl_verdict = self.acl.evaluate(sw_if_index, direction, packet)
        if not acl_verdict.permitted:
            return acl_verdict
        classifier_verdict = self.classifier.evaluate(sw_if_index, direction, packet)
        if not classifier_verdict.permitted:
            return classifier_verdict
        return acl_verdict
