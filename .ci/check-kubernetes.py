#!/usr/bin/env python3
"""Security and operability lint of deploy/kubernetes/, run by .ci/run.

kube-linter is a Go binary published on no registry this project may use, so
this script asserts what it would check for this Deployment, plus what the
issue asks of it. Schema validity is kubernetes-validate's job (run beside
this); this file checks the settings:

- every pod: runAsNonRoot, seccomp RuntimeDefault, no service-account token;
- every container: no privilege escalation, not privileged, read-only root
  filesystem, all capabilities dropped and none added, CPU and memory
  requests and limits, liveness on /healthz and readiness on /readyz, an
  image tag that is not "latest";
- the Deployment runs 2+ replicas, a PodDisruptionBudget covers its pods, and
  terminationGracePeriodSeconds is above worker.shutdown_timeout of the TOML
  in the ConfigMap;
- kustomization.yaml lists every manifest in the folder.

Usage: check-kubernetes.py DIR   (exit 1 with every problem listed)
"""

import pathlib
import re
import sys
import tomllib

import yaml

POD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}


def duration_seconds(text):
    """A humantime duration such as "30s", "2m" or "1m 30s", in seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    total = 0.0
    for number, unit in re.findall(r"(\d+)\s*(ms|s|m|h|d)", text):
        total += int(number) * units[unit]
    return total


def main(folder):
    folder = pathlib.Path(folder)
    problems = []
    docs = []
    for path in sorted(folder.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((path.name, doc))

    kustomization = next((d for n, d in docs if d.get("kind") == "Kustomization"), None)
    manifests = sorted({n for n, d in docs if d.get("kind") != "Kustomization"})
    if kustomization is None:
        problems.append("kustomization.yaml: missing")
    elif sorted(kustomization.get("resources", [])) != manifests:
        problems.append(
            f"kustomization.yaml: resources {sorted(kustomization.get('resources', []))} "
            f"are not the manifests in the folder {manifests}"
        )

    shutdown_timeout = None
    for name, doc in docs:
        if doc.get("kind") == "ConfigMap":
            for key, text in (doc.get("data") or {}).items():
                if key.endswith(".toml"):
                    config = tomllib.loads(text)
                    shutdown_timeout = duration_seconds(
                        config.get("worker", {}).get("shutdown_timeout", "30s")
                    )

    pdb_selectors = [
        d["spec"]["selector"].get("matchLabels", {})
        for _, d in docs
        if d.get("kind") == "PodDisruptionBudget"
    ]

    workloads = [(n, d) for n, d in docs if d.get("kind") in POD_KINDS]
    if not workloads:
        problems.append("no workload found")
    for name, doc in workloads:
        where = f"{name}: {doc['kind']} {doc['metadata']['name']}"
        spec = doc["spec"]
        pod = spec["template"]["spec"]
        labels = spec["template"]["metadata"].get("labels", {})
        if doc["kind"] == "Deployment":
            if spec.get("replicas", 1) < 2:
                problems.append(f"{where}: replicas must be 2 or more")
            if not any(sel and all(labels.get(k) == v for k, v in sel.items()) for sel in pdb_selectors):
                problems.append(f"{where}: no PodDisruptionBudget selects its pods")
        psc = pod.get("securityContext", {})
        if pod.get("automountServiceAccountToken") is not False:
            problems.append(f"{where}: automountServiceAccountToken must be false")
        if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{where}: pod seccompProfile must be RuntimeDefault")
        grace = pod.get("terminationGracePeriodSeconds", 30)
        if shutdown_timeout is not None and not grace > shutdown_timeout:
            problems.append(
                f"{where}: terminationGracePeriodSeconds {grace} must be above "
                f"worker.shutdown_timeout ({shutdown_timeout:g}s)"
            )
        for c in pod.get("initContainers", []) + pod["containers"]:
            at = f"{where} container {c['name']}"
            sc = c.get("securityContext", {})
            if not (sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True):
                problems.append(f"{at}: runAsNonRoot must be true")
            if sc.get("runAsUser", psc.get("runAsUser", 0)) == 0:
                problems.append(f"{at}: must not run as uid 0")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{at}: allowPrivilegeEscalation must be false")
            if sc.get("privileged", False):
                problems.append(f"{at}: must not be privileged")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{at}: readOnlyRootFilesystem must be true")
            caps = sc.get("capabilities", {})
            if "ALL" not in caps.get("drop", []):
                problems.append(f"{at}: capabilities.drop must contain ALL")
            if caps.get("add"):
                problems.append(f"{at}: must add no capability")
            if sc.get("seccompProfile", psc.get("seccompProfile", {})).get("type") != "RuntimeDefault":
                problems.append(f"{at}: seccompProfile must be RuntimeDefault")
            resources = c.get("resources", {})
            for part in ("requests", "limits"):
                for res in ("cpu", "memory"):
                    if res not in resources.get(part, {}):
                        problems.append(f"{at}: resources.{part}.{res} is not set")
            image = c.get("image", "")
            if image.endswith(":latest"):
                problems.append(f"{at}: image tag latest")
            if c in pod["containers"]:
                probes = {
                    "livenessProbe": "/healthz",
                    "readinessProbe": "/readyz",
                }
                for probe, path in probes.items():
                    got = c.get(probe, {}).get("httpGet", {}).get("path")
                    if got != path:
                        problems.append(f"{at}: {probe} must GET {path} (got {got})")

    for p in problems:
        print(f"check-kubernetes: {p}")
    if problems:
        return 1
    print(f"check-kubernetes: {len(workloads)} workload(s), {len(docs)} document(s): security settings ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "deploy/kubernetes"))
