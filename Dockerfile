# CPU image for pointkd. Build: docker build -t pointkd .
# For a GPU/TensorRT image, build FROM an NVIDIA CUDA/TensorRT base instead and install the `tensorrt` extra.
FROM python:3.11-slim

ARG TORCH_VERSION=2.13.0
# The CPU-only torch wheels; PyPI's default torch wheel is a multi-GB CUDA build.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

# libusb: open3d does not import without it. libjemalloc2: pointkd preloads it for its long-running commands.
# libgomp1: OpenMP runtime for torch and onnxruntime. Unpinned on purpose: the slim base's Debian release fixes
# their versions, and pinning exact Debian revisions breaks the build at every point release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libusb-1.0-0 libjemalloc2 libgomp1 \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 10001 pointkd
WORKDIR /app

RUN pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"
COPY pyproject.toml README.md ./
COPY pointkd ./pointkd
COPY serving ./serving
COPY calibration ./calibration
# The package itself, from this context; its dependencies are bounded in pyproject.toml.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[serve,export]"

USER 10001:10001
ENV PYTHONUNBUFFERED=1 \
    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 \
    MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1
EXPOSE 8000
# Mount an artifact folder written by `pointkd compile` at /models/student (docker run -v ...:/models/student:ro).
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/v2/health/ready', timeout=2)"]
ENTRYPOINT ["pointkd"]
CMD ["serve", "/models/student", "--host", "0.0.0.0", "--port", "8000"]
