from .dgcnn import DGCNN, DGCNNConfig, DGCNNOutput
from .edgeconv import EdgeConv
from .knn import knn, knn_cluster, knn_dense, torch_cluster_available
from .registry import create_model, list_models, model_config, model_from_config, register_model

__all__ = [
    "DGCNN",
    "DGCNNConfig",
    "DGCNNOutput",
    "EdgeConv",
    "create_model",
    "knn",
    "knn_cluster",
    "knn_dense",
    "list_models",
    "model_config",
    "model_from_config",
    "register_model",
    "torch_cluster_available",
]
