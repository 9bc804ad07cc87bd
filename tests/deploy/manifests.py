"""deploy/ as the cluster would get it, and the checks the tests run on it.

Rendering here is the small part of kustomize deploy/ uses (resources, namespace, labels,
configMapGenerator from files, images) and a strategic merge of the calico-node patch onto
Calico's DaemonSet (lists merged by their Kubernetes merge key). tests/deploy/test_kustomize.py
compares both with kubectl's own kustomize where kubectl is installed, so they cannot drift.

Each check returns the problems it finds (empty: none), so a test can show it fails on a spoiled copy.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
BASE = DEPLOY / "base"
PATCH_DIR = DEPLOY / "calico-node"
OPERATOR_DIR = DEPLOY / "operator"
CALICO_NODE_BASE = Path(__file__).with_name("calico_node_base.yaml")
CALICO_NODE_OPERATOR = Path(__file__).with_name("calico_node_operator.yaml")
NAMESPACE = "kube-system"  # calico-node's, manifest installs
OPERATOR_NAMESPACE = "calico-system"  # tigera/operator pkg/common: CalicoNamespace
WORKLOADS = ("DaemonSet", "Deployment")

# Strategic merge keys of the pod-spec lists the patch touches (k8s.io/api core/v1 patchMergeKey).
MERGE_KEYS = {"containers": "name", "initContainers": "name", "env": "name", "volumes": "name",
              "volumeMounts": "mountPath", "ports": "containerPort"}

Obj = dict[str, Any]


def load_documents(path: Path) -> list[Obj]:
    """Every YAML document in `path` that is not empty; each must be a mapping."""
    docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    for doc in docs:
        if not isinstance(doc, dict):
            raise ValueError(f"{path}: a document is not a mapping: {doc!r}")
    return docs


def kustomization(directory: Path) -> Obj:
    (doc,) = load_documents(directory / "kustomization.yaml")
    return doc


def render_objects(directory: Path = DEPLOY) -> list[Obj]:
    """What `kubectl apply -k directory` sends, for the kustomize features deploy/ uses."""
    kust = kustomization(directory)
    objects: list[Obj] = []
    for name in kust.get("resources", []):
        path = directory / name
        objects += render_objects(path) if path.is_dir() else load_documents(path)
    for generator in kust.get("configMapGenerator", []):
        data = {Path(f).name: (directory / f).read_text() for f in generator.get("files", [])}
        objects.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": generator["name"]},
                        "data": data})
    namespace = kust.get("namespace")
    labels = {k: v for entry in kust.get("labels", []) for k, v in entry.get("pairs", {}).items()}
    accounts = {o["metadata"]["name"] for o in objects if o["kind"] == "ServiceAccount"}
    rendered = []
    for obj in objects:
        meta = obj.setdefault("metadata", {})
        if namespace and obj["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            meta["namespace"] = namespace
        if namespace and obj["kind"] == "ClusterRoleBinding":
            for subject in obj.get("subjects", []):
                if subject["kind"] == "ServiceAccount" and subject["name"] in accounts:
                    subject["namespace"] = namespace  # the account moves with the namespace: so does its binding
        if labels:
            meta["labels"] = {**meta.get("labels", {}), **labels}
        if obj["kind"] in WORKLOADS:
            obj = set_images(obj, kust.get("images", []))
        rendered.append(obj)
    return rendered


def set_images(obj: Obj, images: list[Obj]) -> Obj:
    """Kustomize's images transformer on one workload: name -> newName:newTag."""
    result = copy.deepcopy(obj)
    by_name = {i["name"]: i for i in images}
    spec = result["spec"]["template"]["spec"]
    for container in spec.get("initContainers", []) + spec.get("containers", []):
        image = container.get("image")
        if image is None:
            continue
        head, _, last = image.split("@", 1)[0].rpartition("/")
        name = f"{head}/{last.split(':', 1)[0]}" if head else last.split(":", 1)[0]
        if name in by_name:
            entry = by_name[name]
            container["image"] = f"{entry.get('newName', name)}:{entry.get('newTag', 'latest')}"
    return result


def rendered_patch() -> Obj:
    """deploy/calico-node's output: the patch with its images set."""
    kust = kustomization(PATCH_DIR)
    (patch,) = [doc for name in kust["resources"] for doc in load_documents(PATCH_DIR / name)]
    return set_images(patch, kust.get("images", []))


def strategic_merge(base: Any, patch: Any, field: str = "") -> Any:
    """`patch` merged into `base` the way the API server merges a strategic-merge patch of a pod spec."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = strategic_merge(base[key], value, key) if key in base else copy.deepcopy(value)
        return merged
    if isinstance(base, list) and isinstance(patch, list) and field in MERGE_KEYS:
        key = MERGE_KEYS[field]
        merged_list = [copy.deepcopy(item) for item in base]
        for item in patch:
            match = next((i for i, old in enumerate(merged_list) if old.get(key) == item.get(key)), None)
            if match is None:
                merged_list.append(copy.deepcopy(item))
            else:
                merged_list[match] = strategic_merge(merged_list[match], item, "")
        return merged_list
    return copy.deepcopy(patch)


def patched_calico_node(patch: Obj | None = None) -> Obj:
    (base,) = load_documents(CALICO_NODE_BASE)
    result: Obj = strategic_merge(base, rendered_patch() if patch is None else patch)
    return result


def pod_spec(daemonset: Obj) -> Obj:
    spec: Obj = daemonset["spec"]["template"]["spec"]
    return spec


def container(daemonset: Obj, name: str, *, init: bool = False) -> Obj:
    group = "initContainers" if init else "containers"
    (found,) = [c for c in pod_spec(daemonset).get(group, []) if c["name"] == name]
    return found


def env_of(container_spec: Obj) -> dict[str, str]:
    """A container's literal environment (valueFrom entries are left out)."""
    return {e["name"]: e["value"] for e in container_spec.get("env", []) if "value" in e}


def volume_at(daemonset: Obj, container_spec: Obj, path: str) -> tuple[str, str] | None:
    """(volume name, path inside it) of the deepest mount that holds `path` in this container."""
    best: tuple[str, str] | None = None
    best_len = -1
    for mount in container_spec.get("volumeMounts", []):
        mount_path = mount["mountPath"].rstrip("/")
        if (path == mount_path or path.startswith(mount_path + "/")) and len(mount_path) > best_len:
            inside = path[len(mount_path):].lstrip("/")
            if "subPath" in mount:
                inside = f"{mount['subPath']}/{inside}".rstrip("/")
            best, best_len = (mount["name"], inside), len(mount_path)
    return best


def place(daemonset: Obj, container_name: str, path: str, *, init: bool = False) -> tuple[str, str] | None:
    """Where `path` in a container really is, comparable across containers and pods: a node
    directory ("node", its path) or a volume of one pod ("DaemonSet/VOLUME", path inside); None
    when the path is in the container's own file system, which nothing else sees."""
    where = volume_at(daemonset, container(daemonset, container_name, init=init), path)
    if where is None:
        return None
    (volume,) = [v for v in pod_spec(daemonset)["volumes"] if v["name"] == where[0]]
    if "hostPath" in volume:
        return "node", f"{volume['hostPath']['path'].rstrip('/')}/{where[1]}".rstrip("/")
    return f"{daemonset['metadata']['name']}/{where[0]}", where[1]


@dataclass(frozen=True)
class Variant:
    """One way deploy/ runs the agent: the objects it applies, the pod with the vppagent and vpp
    containers, and the calico-node pod whose Felix runs felix-shim (the same pod for manifest installs)."""

    name: str
    objects: list[Obj]
    agent_pod: Obj
    calico_node: Obj


def manifest_variant() -> Variant:
    pod = patched_calico_node()
    return Variant("manifest install", render_objects(DEPLOY), pod, pod)


def operator_variant() -> Variant:
    rendered = render_objects(OPERATOR_DIR)
    (pod,) = [o for o in rendered if o["kind"] in WORKLOADS]
    (calico_node,) = load_documents(CALICO_NODE_OPERATOR)
    return Variant("operator install", [o for o in rendered if o is not pod], pod, calico_node)


# --- checks: each returns a list of problems ---------------------------------------------------

SERVICE_RULES = {("", "services"), ("discovery.k8s.io", "endpointslices")}
SERVICE_VERBS = {"get", "list", "watch"}


def rbac_problems(objects: list[Obj]) -> list[str]:
    """The service source's rights: get/list/watch services and endpointslices, for vppagent's account only."""
    problems: list[str] = []
    roles = [o for o in objects if o["kind"] in ("ClusterRole", "Role")]
    bindings = [o for o in objects if o["kind"] in ("ClusterRoleBinding", "RoleBinding")]
    if len(roles) != 1 or roles[0]["kind"] != "ClusterRole":
        return [f"expected exactly one ClusterRole, found {[(r['kind'], r['metadata']['name']) for r in roles]}"]
    granted: set[tuple[str, str, str]] = set()
    for rule in roles[0].get("rules", []):
        if set(rule) - {"apiGroups", "resources", "verbs"}:
            problems.append(f"rule has more than groups/resources/verbs: {sorted(rule)}")
        granted |= {(g, r, v) for g in rule.get("apiGroups", []) for r in rule.get("resources", [])
                    for v in rule.get("verbs", [])}
    wanted = {(g, r, v) for g, r in SERVICE_RULES for v in SERVICE_VERBS}
    if granted != wanted:
        problems.append(f"granted beyond the service source's needs: {sorted(granted - wanted)}; "
                        f"missing: {sorted(wanted - granted)}")
    accounts = {(o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objects
                if o["kind"] == "ServiceAccount"}
    if len(bindings) != 1 or bindings[0]["kind"] != "ClusterRoleBinding":
        return [*problems, f"expected exactly one ClusterRoleBinding, found {len(bindings)}"]
    binding = bindings[0]
    if binding["roleRef"] != {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                              "name": roles[0]["metadata"]["name"]}:
        problems.append(f"binding refers to {binding['roleRef']}")
    subjects = {(s["kind"], s.get("namespace"), s["name"]) for s in binding.get("subjects", [])}
    if subjects != {("ServiceAccount", ns, name) for ns, name in accounts} or len(accounts) != 1:
        problems.append(f"binding subjects {sorted(subjects, key=str)} are not exactly the service account {accounts}")
    return problems


def token_problems(objects: list[Obj], daemonset: Obj) -> list[str]:
    """The agent container gets vppagent's token at the in-cluster path, from a token Secret of that account."""
    problems: list[str] = []
    (account,) = [o for o in objects if o["kind"] == "ServiceAccount"]
    secrets = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Secret"}
    agent = container(daemonset, "vppagent")
    where = volume_at(daemonset, agent, "/var/run/secrets/kubernetes.io/serviceaccount/token")
    if where is None:
        return ["the vppagent container mounts nothing at the in-cluster token path"]
    (volume,) = [v for v in pod_spec(daemonset)["volumes"] if v["name"] == where[0]]
    secret_name = volume.get("secret", {}).get("secretName")
    secret = secrets.get(secret_name or "")
    if secret is None:
        return [f"token volume {where[0]} is not a Secret of deploy/ (secretName {secret_name!r})"]
    if secret.get("type") != "kubernetes.io/service-account-token":
        problems.append(f"Secret {secret_name} is of type {secret.get('type')!r}")
    annotation = secret["metadata"].get("annotations", {}).get("kubernetes.io/service-account.name")
    if annotation != account["metadata"]["name"]:
        problems.append(f"Secret {secret_name} is for account {annotation!r}, not {account['metadata']['name']}")
    return problems


def mount_problems(objects: list[Obj], daemonset: Obj) -> list[str]:
    """Every mount names a declared volume; every ConfigMap or Secret volume is one deploy/ makes."""
    problems: list[str] = []
    spec = pod_spec(daemonset)
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    made = {(o["kind"], o["metadata"]["name"]) for o in objects}
    for c in spec.get("initContainers", []) + spec.get("containers", []):
        for mount in c.get("volumeMounts", []):
            if mount["name"] not in volumes:
                problems.append(f"container {c['name']} mounts undeclared volume {mount['name']}")
    for name, volume in volumes.items():
        if "configMap" in volume and ("ConfigMap", volume["configMap"]["name"]) not in made:
            problems.append(f"volume {name}: ConfigMap {volume['configMap']['name']} is not in deploy/")
        if "secret" in volume and ("Secret", volume["secret"]["secretName"]) not in made:
            problems.append(f"volume {name}: Secret {volume['secret']['secretName']} is not in deploy/")
    return problems
