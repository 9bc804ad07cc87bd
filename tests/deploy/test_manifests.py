"""deploy/: every manifest parses and validates against Kubernetes' schemas, RBAC grants exactly what
the service source needs, the settings are ones vppagent and felix-shim accept (read by their own
loaders), the sockets meet, and the images are the ones docker/ builds. For both ways deploy/ is
used: Calico from its manifests (deploy/ + the calico-node patch) and Calico's operator
(deploy/operator, beside the calico-node the operator renders).

Kubernetes versions: the schemas kubernetes-validate ships (offline), strictly (unknown fields are
errors), for the oldest release deploy/ supports and the newest the package has.
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from felix_shim import config as shim_config
from tests.deploy.install_script import load_installer
from tests.deploy.manifests import (
    BASE,
    DEPLOY,
    NAMESPACE,
    OPERATOR_DIR,
    OPERATOR_NAMESPACE,
    PATCH_DIR,
    ROOT,
    Variant,
    container,
    env_of,
    kustomization,
    load_documents,
    manifest_variant,
    mount_problems,
    operator_variant,
    place,
    pod_spec,
    rbac_problems,
    rendered_patch,
    token_problems,
    volume_at,
)
from vppagent import cli
from vppagent.config import DEFAULT_SOCKET, AgentConfig, load_config
from vppagent.services.runner import node_name

OLDEST_SUPPORTED = "1.30"
K8S_VERSIONS = [OLDEST_SUPPORTED, kubernetes_validate.utils.latest_version()]
DOCKER = ROOT / "docker"
# What Calico's operator execs with linuxDataplane: VPP (tigera/operator pkg/render/node.go).
OPERATOR_DRIVER = "/usr/local/bin/felix-plugins/felix-api-proxy"

Obj = dict[str, Any]


@pytest.fixture(scope="module", params=["manifest", "operator"])
def variant(request: pytest.FixtureRequest) -> Variant:
    return manifest_variant() if request.param == "manifest" else operator_variant()


def validation_errors(obj: Obj, version: str) -> list[str]:
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{obj['kind']}/{obj['metadata']['name']}: {'.'.join(map(str, exc.path))}: {exc.message}"]
    return []


def agent_settings(variant: Variant, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AgentConfig:
    """The vppagent container's settings as `vppagent run` reads them: its args through the CLI's parser,
    its environment, and the ConfigMap file its --config names (written where the test can read it)."""
    agent = container(variant.agent_pod, "vppagent")
    args = cli.build_parser().parse_args(agent["args"])
    assert args.func is cli.cmd_run, agent["args"]
    where = volume_at(variant.agent_pod, agent, args.config)
    assert where is not None, f"--config {args.config} is on no volume of the vppagent container"
    (volume,) = [v for v in pod_spec(variant.agent_pod)["volumes"] if v["name"] == where[0]]
    (config_map,) = [o for o in variant.objects if o["kind"] == "ConfigMap"
                     and o["metadata"]["name"] == volume["configMap"]["name"]]
    local = tmp_path / "config.yaml"
    local.write_text(config_map["data"][where[1]])
    args.config = str(local)
    for name in list(os.environ):
        if name.startswith("VPPAGENT_"):
            monkeypatch.delenv(name)
    for name, value in env_of(agent).items():
        monkeypatch.setenv(name, value)
    return load_config({k: getattr(args, k) for k in AgentConfig.model_fields if hasattr(args, k)})


def installer_args(variant: Variant) -> Any:
    """The felix-shim installer's arguments, read by the installer's own parser."""
    command = container(variant.agent_pod, "install-felix-shim", init=True)["command"]
    assert command[:2] == ["python3", "/etc/vppagent/install/install_felix_shim.py"], command
    return load_installer().parse_args(command[2:])


def shim_env(variant: Variant) -> dict[str, str]:
    """felix-shim's environment: Felix's (calico-node's), and the socket the launcher adds when Felix
    has none (the launcher's `${VPPAGENT_SOCKET:-...}`)."""
    env = env_of(container(variant.calico_node, "calico-node"))
    socket = installer_args(variant).socket
    return {**({"VPPAGENT_SOCKET": socket} if socket else {}), **env}


# --- parse and validate --------------------------------------------------------------------------

def test_every_yaml_file_parses_into_objects() -> None:
    generated_from = {(BASE / f).resolve() for gen in kustomization(BASE)["configMapGenerator"]
                      for f in gen["files"]}
    files = sorted(DEPLOY.rglob("*.yaml"))
    assert len(files) >= 7, files
    for path in files:
        docs = load_documents(path)  # a ConfigMap's file (the agent's config) must parse too
        if path.resolve() in generated_from:
            continue
        for doc in docs:
            assert doc.get("apiVersion") and doc.get("kind"), f"{path}: {doc}"


def test_kustomizations_name_only_files_that_exist() -> None:
    for directory in (DEPLOY, BASE, PATCH_DIR, OPERATOR_DIR):
        kust = kustomization(directory)
        listed = list(kust.get("resources", []))
        listed += [f for gen in kust.get("configMapGenerator", []) for f in gen.get("files", [])]
        assert listed
        for name in listed:
            path = directory / name
            assert path.is_file() or (path / "kustomization.yaml").is_file(), f"{directory}: missing {name}"


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_objects_validate(variant: Variant, version: str) -> None:
    kinds = sorted(o["kind"] for o in variant.objects)
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "ConfigMap", "ConfigMap", "ConfigMap", "Secret",
                     "ServiceAccount"]
    assert [e for o in [*variant.objects, variant.agent_pod] for e in validation_errors(o, version)] == []
    namespace = NAMESPACE if variant.agent_pod is variant.calico_node else OPERATOR_NAMESPACE
    namespaced = [*variant.objects, variant.agent_pod]
    assert {o["metadata"].get("namespace") for o in namespaced if not o["kind"].startswith("Cluster")} == {namespace}
    assert variant.calico_node["metadata"]["namespace"] == namespace


def test_a_spoiled_manifest_fails_validation(variant: Variant) -> None:
    spoiled = copy.deepcopy(variant.agent_pod)
    container(spoiled, "vppagent")["volumeMounts"][0]["mountpath"] = "/etc/vppagent"  # a typo'd field
    assert validation_errors(spoiled, K8S_VERSIONS[0])
    spoiled = copy.deepcopy(variant.agent_pod)
    container(spoiled, "vpp")["securityContext"]["privileged"] = "yes"  # a string where a bool goes
    assert validation_errors(spoiled, K8S_VERSIONS[-1])


def test_the_patch_keeps_what_calico_node_had() -> None:
    daemonset = manifest_variant().agent_pod
    calico = container(daemonset, "calico-node")
    assert calico["image"].startswith("quay.io/calico/node:")
    assert env_of(calico)["CALICO_NETWORKING_BACKEND"] == "bird" and env_of(calico)["DATASTORE_TYPE"]
    assert {"lib-modules", "var-run-calico", "xtables-lock"} <= {v["name"] for v in pod_spec(daemonset)["volumes"]}
    assert [c["name"] for c in pod_spec(daemonset)["initContainers"]] == ["install-cni", "install-felix-shim"]
    assert pod_spec(daemonset)["serviceAccountName"] == "calico-node"
    assert rendered_patch()["metadata"] == {"name": "calico-node", "namespace": NAMESPACE}


def test_operator_daemonset_runs_the_patchs_containers() -> None:
    """One definition in spirit: deploy/operator's containers are the patch's, but for where the agent's
    socket lives (calico-node's /run/vppagent is not there to share; /var/run/calico is)."""
    patch, operator = manifest_variant().agent_pod, operator_variant().agent_pod
    assert container(operator, "vpp") == container(patch, "vpp")
    theirs, ours = copy.deepcopy(container(patch, "vppagent")), copy.deepcopy(container(operator, "vppagent"))
    ours["env"] = [e for e in ours["env"] if e["name"] != "VPPAGENT_SOCKET"]
    theirs["volumeMounts"] = [m for m in theirs["volumeMounts"] if m["name"] != "vppagent-run"]
    assert sorted(ours.pop("volumeMounts"), key=str) == sorted(theirs.pop("volumeMounts"), key=str)
    assert ours == theirs
    theirs_init = container(patch, "install-felix-shim", init=True)
    ours_init = container(operator, "install-felix-shim", init=True)
    assert ours_init["command"][:3] == theirs_init["command"] and ours_init["volumeMounts"] == theirs_init[
        "volumeMounts"]


# --- RBAC --------------------------------------------------------------------------------------

def test_rbac_grants_exactly_the_service_sources_needs(variant: Variant) -> None:
    assert rbac_problems(variant.objects) == []


@pytest.mark.parametrize("spoil", ["extra verb", "extra resource", "wildcard", "other account", "other namespace"])
def test_rbac_check_catches_more_rights(spoil: str) -> None:
    spoiled = copy.deepcopy(manifest_variant().objects)
    (role,) = [o for o in spoiled if o["kind"] == "ClusterRole"]
    (binding,) = [o for o in spoiled if o["kind"] == "ClusterRoleBinding"]
    if spoil == "extra verb":
        role["rules"][0]["verbs"].append("create")
    elif spoil == "extra resource":
        role["rules"][1]["resources"].append("endpoints")
    elif spoil == "wildcard":
        role["rules"][0]["resources"] = ["*"]
    elif spoil == "other account":
        binding["subjects"].append({"kind": "ServiceAccount", "name": "calico-node", "namespace": NAMESPACE})
    else:
        binding["subjects"][0]["namespace"] = OPERATOR_NAMESPACE
    assert rbac_problems(spoiled)


def test_agent_uses_vppagents_token_not_calico_nodes(variant: Variant) -> None:
    assert token_problems(variant.objects, variant.agent_pod) == []
    spoiled = copy.deepcopy(variant.agent_pod)
    container(spoiled, "vppagent")["volumeMounts"] = [
        m for m in container(spoiled, "vppagent")["volumeMounts"] if "serviceaccount" not in m["mountPath"]]
    assert token_problems(variant.objects, spoiled)


def test_every_mount_has_its_volume_and_its_object(variant: Variant) -> None:
    assert mount_problems(variant.objects, variant.agent_pod) == []
    spoiled = [o for o in variant.objects if o["metadata"]["name"] != "vppagent-vpp-startup"]
    assert mount_problems(spoiled, variant.agent_pod)


# --- settings read by the programs' own loaders -----------------------------------------------------

def test_agent_config_loads_through_the_agents_loader(variant: Variant, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    settings = agent_settings(variant, tmp_path, monkeypatch)
    assert settings.services == "kubernetes"
    assert settings.driver == "vpp"
    assert settings.kubeconfig is None  # the in-cluster config: vppagent's token mounted at its path
    # `kubectl exec ... vppagent state` finds the agent: the container's VPPAGENT_SOCKET, else the default.
    assert str(settings.socket) == env_of(container(variant.agent_pod, "vppagent")).get(
        "VPPAGENT_SOCKET", DEFAULT_SOCKET)


def test_agent_loader_refuses_a_spoiled_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    variant = manifest_variant()
    (config_map,) = [o for o in variant.objects if o["metadata"]["name"] == "vppagent-config"]
    config_map["data"]["config.yaml"] += "service: kubernetes\n"  # not a key AgentConfig has
    with pytest.raises(Exception, match="service"):
        agent_settings(variant, tmp_path, monkeypatch)


def test_agent_env_names_are_read_by_the_agent(variant: Variant, monkeypatch: pytest.MonkeyPatch) -> None:
    agent = container(variant.agent_pod, "vppagent")
    names = {e["name"] for e in agent.get("env", [])}
    prefixed = {f"VPPAGENT_{field.upper()}" for field in AgentConfig.model_fields}
    assert names - prefixed == {"NODENAME"}
    (nodename,) = [e for e in agent["env"] if e["name"] == "NODENAME"]
    assert nodename["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    monkeypatch.setenv("NODENAME", "node-7")
    assert node_name() == "node-7"  # the service source's name for this node until Felix says it


def test_felix_runs_the_launcher_the_installer_writes(variant: Variant) -> None:
    env = env_of(container(variant.calico_node, "calico-node"))
    assert env["FELIX_USEINTERNALDATAPLANEDRIVER"] == "false"
    driver = env["FELIX_DATAPLANEDRIVER"]
    args = installer_args(variant)
    written = place(variant.agent_pod, "install-felix-shim", f"{args.dest}/{args.name}", init=True)
    assert written is not None, f"the installer writes {args.dest} on no volume"
    assert place(variant.calico_node, "calico-node", driver) == written
    installer = container(variant.agent_pod, "install-felix-shim", init=True)
    script_where = volume_at(variant.agent_pod, installer, installer["command"][1])
    assert script_where is not None and script_where[1] == "install_felix_shim.py"
    if variant.agent_pod is not variant.calico_node:
        assert driver == OPERATOR_DRIVER


def test_shim_env_names_are_read_by_the_shim(variant: Variant) -> None:
    env = shim_env(variant)
    read = {var for _dest, _flag, var, _conv, _default in shim_config._SETTINGS if var}
    ours = {name for name in env if name.startswith("VPPAGENT_")}
    assert ours and ours <= read, ours - read
    assert shim_config.parse_config([], env).socket_path == env["VPPAGENT_SOCKET"]


def test_socket_paths_agree(variant: Variant, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = agent_settings(variant, tmp_path, monkeypatch)
    pod = variant.agent_pod
    # felix-shim (Felix's child in calico-node) dials the agent's socket: the same file in both.
    shim = shim_config.parse_config([], shim_env(variant))
    agent_side = place(pod, "vppagent", str(settings.socket))
    assert agent_side is not None, f"agent socket {settings.socket} is in the container's own files"
    assert place(variant.calico_node, "calico-node", shim.socket_path) == agent_side
    # The agent reaches VPP's API socket where VPP's startup.conf puts it.
    startup_where = volume_at(pod, container(pod, "vpp"), "/etc/vpp/startup.conf")
    assert startup_where is not None
    (startup_volume,) = [v for v in pod_spec(pod)["volumes"] if v["name"] == startup_where[0]]
    (startup_map,) = [o for o in variant.objects if o["metadata"]["name"] == startup_volume["configMap"]["name"]]
    socksvr = re.search(r"socksvr\s*\{[^}]*socket-name\s+(\S+)", startup_map["data"][startup_where[1]])
    assert socksvr is not None and socksvr.group(1) == str(settings.vpp_api_socket)
    assert place(pod, "vpp", socksvr.group(1)) == place(pod, "vppagent", str(settings.vpp_api_socket))
    assert place(pod, "vpp", socksvr.group(1)) is not None
    # Calico's CNI plugin (on the node) dials the CNI socket in the node's /var/run/calico.
    assert place(pod, "vppagent", str(settings.cni_socket)) == ("node", str(settings.cni_socket))
    assert pod_spec(pod)["hostNetwork"] is True


def test_spoiled_socket_path_is_caught() -> None:
    variant = manifest_variant()
    spoiled = copy.deepcopy(variant.calico_node)
    for entry in container(spoiled, "calico-node")["env"]:
        if entry["name"] == "VPPAGENT_SOCKET":
            entry["value"] = "/run/vppagent-other/agent.sock"
    socket = shim_config.parse_config([], env_of(container(spoiled, "calico-node"))).socket_path
    assert place(spoiled, "calico-node", socket) is None  # on no shared volume: the check above fails


# --- images ----------------------------------------------------------------------------------------

def dockerfile_entrypoint(name: str) -> list[str]:
    match = re.search(r"^ENTRYPOINT (\[.*\])$", (DOCKER / name).read_text(), re.MULTILINE)
    assert match is not None, name
    entry: list[str] = json.loads(match.group(1))
    return entry


@pytest.mark.parametrize("directory", [PATCH_DIR, OPERATOR_DIR], ids=["patch", "operator"])
def test_images_are_the_ones_docker_builds(directory: Path) -> None:
    images = kustomization(directory)["images"]
    assert {i["name"] for i in images} == {"vppagent", "vppagent-vpp"}
    (source,) = [d for name in kustomization(directory)["resources"] if (directory / name).is_file()
                 for d in load_documents(directory / name)]
    spec = pod_spec(source)
    used = {c["name"]: c.get("image") for c in spec["initContainers"] + spec["containers"]}
    assert {k: v for k, v in used.items() if k != "calico-node"} == {
        "install-felix-shim": "vppagent", "vppagent": "vppagent", "vpp": "vppagent-vpp"}
    daemonset = manifest_variant().agent_pod if directory == PATCH_DIR else operator_variant().agent_pod
    # vppagent image: ENTRYPOINT vppagent, so args are a vppagent command; Python for the installer.
    assert dockerfile_entrypoint("agent.Dockerfile") == ["vppagent"]
    assert re.search(r"^FROM python:3\.\d+", (DOCKER / "agent.Dockerfile").read_text(), re.MULTILINE)
    assert container(daemonset, "install-felix-shim", init=True)["command"][0] == "python3"
    # VPP image: its ENTRYPOINT reads the startup.conf the pod mounts from the ConfigMap.
    entry = dockerfile_entrypoint("vpp.Dockerfile")
    assert entry[-2:] == ["-c", "/etc/vpp/startup.conf"]
    assert volume_at(daemonset, container(daemonset, "vpp"), entry[-1]) is not None
    assert "args" not in container(daemonset, "vpp") and "command" not in container(daemonset, "vpp")


def test_readme_builds_the_images_under_these_names() -> None:
    readme = (ROOT / "README.md").read_text()
    for dockerfile, image in (("agent.Dockerfile", "vppagent"), ("vpp.Dockerfile", "vppagent-vpp")):
        assert re.search(rf"docker build -f docker/{re.escape(dockerfile)} -t \S*{image}:", readme), image
