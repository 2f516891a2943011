"""Training on more than one node: a Kubeflow Trainer PyTorchJob (kubeflow.org/v1) from cluster.yaml.

A Kubeflow Pipelines task is one pod, so it trains on the GPUs of one node (torchrun, one process per GPU).
Across nodes the training operator's PyTorchJob starts the pods and sets MASTER_ADDR, MASTER_PORT and each
pod's RANK; every pod runs torchrun, which starts one process per GPU and joins the others. The job runs
the same ``specgan train`` as everywhere else, on features, stats and params on a shared volume (for
example the outputs of ``dvc repro features stats`` or of a pipeline run, copied there)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from pipeline.specgan_pipeline import REQUIRE_ENV, Cluster
from specgan.core.errors import SpecganError

MOUNT = "/workspace"  # where the shared volume is mounted in every pod


def pytorchjob(cluster: Cluster, nodes: int, data_pvc: str, name: str = "specgan-train",
               namespace: str | None = None) -> dict[str, Any]:
    """The PyTorchJob manifest: ``nodes`` pods of cluster.yaml's train resources (``accelerator_count`` GPUs
    each), reading ``features/``, ``stats.json`` and ``params.yaml`` from the volume ``data_pvc`` and writing
    ``train/`` (checkpoints and generator.pt) there; tracking settings from the config map and secrets."""
    if nodes < 1:
        raise SpecganError(f"--nodes must be at least 1, got {nodes}")
    if not data_pvc:
        raise SpecganError("--data-pvc is required: the nodes read features and write checkpoints on a shared volume")
    t = cluster.train
    gpus = int(t.get("accelerator_count", 1))
    gpu = t.get("accelerator_type", "nvidia.com/gpu")
    command = ["torchrun", "--nnodes", str(nodes), "--nproc_per_node", str(gpus), "--node_rank", "$(RANK)",
               "--master_addr", "$(MASTER_ADDR)", "--master_port", "$(MASTER_PORT)",
               "-m", "specgan", "train", "--features", f"{MOUNT}/features", "--stats", f"{MOUNT}/stats.json",
               "--out", f"{MOUNT}/train", "--params", f"{MOUNT}/params.yaml"]
    env_from: list[dict] = [{"configMapRef": {"name": cluster.config_map, "optional": False}}]
    env_from += [{"secretRef": {"name": s, "optional": True}} for s in (cluster.secrets or {}).values() if s]
    container = {
        "name": "pytorch", "image": cluster.base_image, "command": command, "envFrom": env_from,
        "env": [{"name": REQUIRE_ENV, "value": "1"}],  # no tracking server: fail at start, in one line
        "resources": {"requests": {"cpu": str(t["cpu_request"]), "memory": str(t["memory_request"]), gpu: gpus},
                      "limits": {"cpu": str(t["cpu_limit"]), "memory": str(t["memory_limit"]), gpu: gpus}},
        "volumeMounts": [{"name": "data", "mountPath": MOUNT}, {"name": "dshm", "mountPath": "/dev/shm"}],
    }
    pod = {"spec": {
        "containers": [container],
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": data_pvc}},
                    {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": t.get("shm_size", "8Gi")}}],
        "nodeSelector": dict(t.get("node_selector") or {}),
        "tolerations": list(t.get("tolerations") or []),
    }}
    retries = int((cluster.retry or {}).get("count", 0))
    def replicas(n: int) -> dict:  # a restarted pod resumes from the checkpoints on the volume
        return {"replicas": n, "restartPolicy": "OnFailure", "template": copy.deepcopy(pod)}

    specs = {"Master": replicas(1), **({"Worker": replicas(nodes - 1)} if nodes > 1 else {})}
    metadata = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": metadata,
            "spec": {"runPolicy": {"backoffLimit": retries, "cleanPodPolicy": "None"},
                     "pytorchReplicaSpecs": specs}}


def write_pytorchjob(out: str | Path, cluster_path: str | Path, nodes: int, data_pvc: str,
                     namespace: str | None = None) -> Path:
    """Write the manifest as YAML (``kubectl apply -f`` it)."""
    import yaml

    out = Path(out)
    out.write_text(yaml.safe_dump(pytorchjob(Cluster.load(cluster_path), nodes, data_pvc, namespace=namespace),
                                  sort_keys=False))
    return out
