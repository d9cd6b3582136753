# torchgate for a GPU host. The PyPI torch wheels bring their own CUDA libraries and the host's
# NVIDIA container runtime brings the driver, so a slim Python base is enough:
#   docker build -t torchgate .            (add --build-arg PREFETCH_WEIGHTS=true to bake weights in)
#   docker run --gpus all -p 8000:8000 -p 8001:8001 -v torchgate-weights:/weights \
#              -e TORCHGATE_ADMIN_TOKEN="$TOKEN" torchgate     (TOKEN=$(openssl rand -hex 32))
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TORCHGATE_HOST=0.0.0.0 \
    TORCHGATE_WEIGHTS_DIR=/weights \
    TORCHGATE_CHECKPOINT_DIR=/app/models \
    TORCHGATE_DATA_DIR=/app/data \
    TORCHGATE_COMPILED_DIR=/compiled

RUN useradd --create-home --uid 10001 torchgate
WORKDIR /app

# Dependencies first (the slow, rarely changing layer), then the code.
COPY pyproject.toml README.md ./
RUN mkdir app && touch app/__init__.py && pip install . && pip uninstall -y torchgate
COPY app ./app
RUN pip install --no-deps .

COPY models ./models
COPY data/fashion-mnist ./data/fashion-mnist
ARG PREFETCH_WEIGHTS=false
RUN mkdir -p /weights /compiled && chown -R torchgate /weights /compiled /app/data \
    && if [ "$PREFETCH_WEIGHTS" = "true" ]; then \
         su torchgate -c "TORCHGATE_WEIGHTS_DIR=/weights python -m app weights download"; \
       fi

USER torchgate
# /compiled: AOTInductor graph packages (TORCHGATE_GRAPH=aot, not a default), compiled once per
# model, weights and torch version; the image has no C++ compiler (0.4 GB): mount packages
# compiled elsewhere, or eager serves
VOLUME ["/weights", "/compiled"]
# 8000: HTTP (v1 and v2 REST); 8001: the Open Inference Protocol over gRPC (TORCHGATE_GRPC_PORT)
EXPOSE 8000 8001
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
CMD ["python", "-m", "app", "serve", "--host", "0.0.0.0", "--port", "8000"]
