"""deploy/: every manifest parses and validates against Kubernetes' schemas, RBAC grants exactly what
the service source needs, the settings are ones vppagent and felix-shim accept (read by their own
loaders), the sockets meet, and the images are the ones docker/ builds.

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
    DEPLOY,
    NAMESPACE,
    PATCH_DIR,
    ROOT,
    container,
    env_of,
    kustomization,
    load_documents,
    mount_problems,
    patched_calico_node,
    pod_spec,
    rbac_problems,
    render_objects,
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

Obj = dict[str, Any]


@pytest.fixture(scope="module")
def objects() -> list[Obj]:
    return render_objects()


@pytest.fixture(scope="module")
def daemonset() -> Obj:
    return patched_calico_node()


def validation_errors(obj: Obj, version: str) -> list[str]:
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{obj['kind']}/{obj['metadata']['name']}: {'.'.join(map(str, exc.path))}: {exc.message}"]
    return []


def agent_settings(daemonset: Obj, objects: list[Obj], tmp_path: Path,
                   monkeypatch: pytest.MonkeyPatch) -> AgentConfig:
    """The vppagent container's settings as `vppagent run` reads them: its args through the CLI's parser,
    its environment, and the ConfigMap file its --config names (written where the test can read it)."""
    agent = container(daemonset, "vppagent")
    args = cli.build_parser().parse_args(agent["args"])
    assert args.func is cli.cmd_run, agent["args"]
    where = volume_at(daemonset, agent, args.config)
    assert where is not None, f"--config {args.config} is on no volume of the vppagent container"
    (volume,) = [v for v in pod_spec(daemonset)["volumes"] if v["name"] == where[0]]
    (config_map,) = [o for o in objects if o["kind"] == "ConfigMap"
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


# --- parse and validate --------------------------------------------------------------------------

def test_every_yaml_file_parses_into_objects() -> None:
    generated_from = {(DEPLOY / f).resolve() for gen in kustomization(DEPLOY)["configMapGenerator"]
                      for f in gen["files"]}
    files = sorted(DEPLOY.rglob("*.yaml"))
    assert len(files) >= 5, files
    for path in files:
        docs = load_documents(path)  # a ConfigMap's file (the agent's config) must parse too
        if path.resolve() in generated_from:
            continue
        for doc in docs:
            assert doc.get("apiVersion") and doc.get("kind"), f"{path}: {doc}"


def test_kustomizations_name_only_files_that_exist() -> None:
    for directory in (DEPLOY, PATCH_DIR):
        kust = kustomization(directory)
        listed = list(kust.get("resources", []))
        listed += [f for gen in kust.get("configMapGenerator", []) for f in gen.get("files", [])]
        assert listed
        for name in listed:
            assert (directory / name).is_file(), f"{directory}/kustomization.yaml names missing {name}"


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_deploy_objects_validate(objects: list[Obj], version: str) -> None:
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "ConfigMap", "ConfigMap", "ConfigMap", "Secret",
                     "ServiceAccount"]
    assert [e for o in objects for e in validation_errors(o, version)] == []
    assert {o["metadata"].get("namespace") for o in objects if not o["kind"].startswith("Cluster")} == {NAMESPACE}


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_patched_calico_node_validates(daemonset: Obj, version: str) -> None:
    assert validation_errors(daemonset, version) == []


def test_a_spoiled_manifest_fails_validation(daemonset: Obj) -> None:
    spoiled = copy.deepcopy(daemonset)
    container(spoiled, "vppagent")["volumeMounts"][0]["mountpath"] = "/etc/vppagent"  # a typo'd field
    assert validation_errors(spoiled, K8S_VERSIONS[0])
    spoiled = copy.deepcopy(daemonset)
    container(spoiled, "vpp")["securityContext"]["privileged"] = "yes"  # a string where a bool goes
    assert validation_errors(spoiled, K8S_VERSIONS[-1])


def test_the_patch_keeps_what_calico_node_had(daemonset: Obj) -> None:
    calico = container(daemonset, "calico-node")
    assert calico["image"].startswith("quay.io/calico/node:")
    assert env_of(calico)["CALICO_NETWORKING_BACKEND"] == "bird" and env_of(calico)["DATASTORE_TYPE"]
    assert {"lib-modules", "var-run-calico", "xtables-lock"} <= {v["name"] for v in pod_spec(daemonset)["volumes"]}
    assert [c["name"] for c in pod_spec(daemonset)["initContainers"]] == ["install-cni", "install-felix-shim"]
    assert pod_spec(daemonset)["serviceAccountName"] == "calico-node"
    assert rendered_patch()["metadata"] == {"name": "calico-node", "namespace": NAMESPACE}


# --- RBAC --------------------------------------------------------------------------------------

def test_rbac_grants_exactly_the_service_sources_needs(objects: list[Obj]) -> None:
    assert rbac_problems(objects) == []


@pytest.mark.parametrize("spoil", ["extra verb", "extra resource", "wildcard", "other account"])
def test_rbac_check_catches_more_rights(objects: list[Obj], spoil: str) -> None:
    spoiled = copy.deepcopy(objects)
    (role,) = [o for o in spoiled if o["kind"] == "ClusterRole"]
    (binding,) = [o for o in spoiled if o["kind"] == "ClusterRoleBinding"]
    if spoil == "extra verb":
        role["rules"][0]["verbs"].append("create")
    elif spoil == "extra resource":
        role["rules"][1]["resources"].append("endpoints")
    elif spoil == "wildcard":
        role["rules"][0]["resources"] = ["*"]
    else:
        binding["subjects"].append({"kind": "ServiceAccount", "name": "calico-node", "namespace": NAMESPACE})
    assert rbac_problems(spoiled)


def test_agent_uses_vppagents_token_not_calico_nodes(objects: list[Obj], daemonset: Obj) -> None:
    assert token_problems(objects, daemonset) == []
    spoiled = copy.deepcopy(daemonset)
    container(spoiled, "vppagent")["volumeMounts"] = [
        m for m in container(spoiled, "vppagent")["volumeMounts"] if "serviceaccount" not in m["mountPath"]]
    assert token_problems(objects, spoiled)


def test_every_mount_has_its_volume_and_its_object(objects: list[Obj], daemonset: Obj) -> None:
    assert mount_problems(objects, daemonset) == []
    spoiled = [o for o in objects if o["metadata"]["name"] != "vppagent-vpp-startup"]
    assert mount_problems(spoiled, daemonset)


# --- settings read by the programs' own loaders -----------------------------------------------------

def test_agent_config_loads_through_the_agents_loader(objects: list[Obj], daemonset: Obj, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    settings = agent_settings(daemonset, objects, tmp_path, monkeypatch)
    assert settings.services == "kubernetes"
    assert settings.driver == "vpp"
    assert settings.kubeconfig is None  # the in-cluster config: vppagent's token mounted at its path
    # `kubectl exec ... vppagent state` (no flags) must find the agent.
    assert str(settings.socket) == DEFAULT_SOCKET


def test_agent_loader_refuses_a_spoiled_config(objects: list[Obj], daemonset: Obj, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    spoiled = copy.deepcopy(objects)
    (config_map,) = [o for o in spoiled if o["metadata"]["name"] == "vppagent-config"]
    config_map["data"]["config.yaml"] += "service: kubernetes\n"  # not a key AgentConfig has
    with pytest.raises(Exception, match="service"):
        agent_settings(daemonset, spoiled, tmp_path, monkeypatch)


def test_agent_env_names_are_read_by_the_agent(daemonset: Obj, monkeypatch: pytest.MonkeyPatch) -> None:
    agent = container(daemonset, "vppagent")
    names = {e["name"] for e in agent.get("env", [])}
    prefixed = {f"VPPAGENT_{field.upper()}" for field in AgentConfig.model_fields}
    assert names - prefixed == {"NODENAME"}
    (nodename,) = [e for e in agent["env"] if e["name"] == "NODENAME"]
    assert nodename["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    monkeypatch.setenv("NODENAME", "node-7")
    assert node_name() == "node-7"  # the service source's name for this node until Felix says it


def shim_env(daemonset: Obj) -> dict[str, str]:
    return env_of(container(daemonset, "calico-node"))


def test_felix_runs_felix_shim_from_the_installed_volume(daemonset: Obj) -> None:
    env = shim_env(daemonset)
    assert env["FELIX_USEINTERNALDATAPLANEDRIVER"] == "false"
    driver = env["FELIX_DATAPLANEDRIVER"]
    calico = container(daemonset, "calico-node")
    where = volume_at(daemonset, calico, driver)
    assert where is not None, f"FELIX_DATAPLANEDRIVER {driver} is on no volume of calico-node"
    installer = container(daemonset, "install-felix-shim", init=True)
    dest = installer["command"][-1]
    assert volume_at(daemonset, installer, dest) == (where[0], "")
    assert where[1] == load_installer().LAUNCHER  # the file the installer writes
    script_where = volume_at(daemonset, installer, installer["command"][1])
    assert script_where is not None and script_where[1] == "install_felix_shim.py"


def test_shim_env_names_are_read_by_the_shim(daemonset: Obj) -> None:
    env = shim_env(daemonset)
    read = {var for _dest, _flag, var, _conv, _default in shim_config._SETTINGS if var}
    ours = {name for name in env if name.startswith("VPPAGENT_")}
    assert ours and ours <= read, ours - read
    assert shim_config.parse_config([], env).socket_path == env["VPPAGENT_SOCKET"]


def test_socket_paths_agree(objects: list[Obj], daemonset: Obj, tmp_path: Path,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    settings = agent_settings(daemonset, objects, tmp_path, monkeypatch)
    agent, calico, vpp = (container(daemonset, n) for n in ("vppagent", "calico-node", "vpp"))
    # felix-shim (in calico-node) dials the agent's socket, through one volume both containers mount.
    shim = shim_config.parse_config([], shim_env(daemonset))
    assert shim.socket_path == str(settings.socket)
    assert volume_at(daemonset, calico, shim.socket_path) == volume_at(daemonset, agent, str(settings.socket))
    assert volume_at(daemonset, agent, str(settings.socket)) is not None
    # The agent reaches VPP's API socket where VPP's startup.conf puts it, through one volume.
    startup_where = volume_at(daemonset, vpp, "/etc/vpp/startup.conf")
    assert startup_where is not None
    (startup_volume,) = [v for v in pod_spec(daemonset)["volumes"] if v["name"] == startup_where[0]]
    (startup_map,) = [o for o in objects if o["metadata"]["name"] == startup_volume["configMap"]["name"]]
    socksvr = re.search(r"socksvr\s*\{[^}]*socket-name\s+(\S+)", startup_map["data"][startup_where[1]])
    assert socksvr is not None and socksvr.group(1) == str(settings.vpp_api_socket)
    assert volume_at(daemonset, vpp, socksvr.group(1)) == volume_at(daemonset, agent, str(settings.vpp_api_socket))
    assert volume_at(daemonset, vpp, socksvr.group(1)) is not None
    # Calico's CNI plugin (on the host) reaches the CNI socket through calico's /var/run/calico volume.
    cni_dir = volume_at(daemonset, agent, str(settings.cni_socket))
    assert cni_dir is not None and cni_dir[0] == "var-run-calico"
    assert pod_spec(daemonset)["hostNetwork"] is True


def test_spoiled_socket_path_is_caught(daemonset: Obj) -> None:
    spoiled = copy.deepcopy(daemonset)
    for entry in container(spoiled, "calico-node")["env"]:
        if entry["name"] == "VPPAGENT_SOCKET":
            entry["value"] = "/run/vppagent-other/agent.sock"
    calico = container(spoiled, "calico-node")
    socket = shim_config.parse_config([], env_of(calico)).socket_path
    assert volume_at(spoiled, calico, socket) is None  # on no shared volume: the check above would fail


# --- images ----------------------------------------------------------------------------------------

def dockerfile_entrypoint(name: str) -> list[str]:
    match = re.search(r"^ENTRYPOINT (\[.*\])$", (DOCKER / name).read_text(), re.MULTILINE)
    assert match is not None, name
    entry: list[str] = json.loads(match.group(1))
    return entry


def test_images_are_the_ones_docker_builds(daemonset: Obj) -> None:
    images = kustomization(PATCH_DIR)["images"]
    assert {i["name"] for i in images} == {"vppagent", "vppagent-vpp"}
    patch_spec = pod_spec(load_documents(PATCH_DIR / "patch.yaml")[0])
    used = {c["name"]: c.get("image") for c in patch_spec["initContainers"] + patch_spec["containers"]}
    assert used == {"install-felix-shim": "vppagent", "calico-node": None, "vppagent": "vppagent",
                    "vpp": "vppagent-vpp"}
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
