"""pointkd: distil DGCNN point-cloud classifiers with LSP and deploy them."""

__version__ = "0.1.0"
