"""A real local Kubernetes control plane without containers (etcd, kube-apiserver,
kube-controller-manager from one Go multicall binary) plus a simulated kubelet."""

from .cluster import NODE_NAME, LocalCluster
from .container_output import ANNOTATION_LOG, ANNOTATION_LOG_REPEAT
from .kubelet import ANNOTATION_DURATION, ANNOTATION_EXIT_CODE, ANNOTATION_OUTCOME
from .process import ClusterError

__all__ = [
    "ANNOTATION_DURATION",
    "ANNOTATION_EXIT_CODE",
    "ANNOTATION_LOG",
    "ANNOTATION_LOG_REPEAT",
    "ANNOTATION_OUTCOME",
    "NODE_NAME",
    "ClusterError",
    "LocalCluster",
]
