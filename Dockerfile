# latentmap on a CUDA machine. Build: docker build -t latentmap .
# Run:   docker run --gpus all -p 8000:8000 -v latentmap-hf:/home/latentmap/.cache/huggingface -v latentmap-data:/data latentmap
# Weights for the real spaces (unclip-h, turbo-h) go into the HF cache volume once, with network access:
#        docker run --rm -v latentmap-hf:/home/latentmap/.cache/huggingface latentmap latentmap download unclip-h
# The server never downloads; with a GPU and those weights present, --space auto picks unclip-h (else digits).
# Add -e HF_HUB_OFFLINE=1 to the run command to guarantee it. Ids/revisions: see docs/spaces.md.
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04

ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 HF_HUB_DISABLE_TELEMETRY=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv curl ca-certificates \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 1000 latentmap && mkdir -p /data && chown latentmap /data
USER latentmap
WORKDIR /home/latentmap/app
RUN python3.11 -m venv /home/latentmap/venv
ENV PATH=/home/latentmap/venv/bin:$PATH \
    HF_HOME=/home/latentmap/.cache/huggingface \
    NUMBA_CACHE_DIR=/home/latentmap/.cache/numba \
    LATENTMAP_DATA_DIR=/data

COPY --chown=latentmap pyproject.toml README.md ./
COPY --chown=latentmap app ./app
COPY --chown=latentmap training ./training
COPY --chown=latentmap static ./static
COPY --chown=latentmap templates ./templates
RUN pip install -e .

VOLUME ["/home/latentmap/.cache/huggingface", "/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s \
    CMD curl -fsS http://127.0.0.1:8000/api/health || exit 1
CMD ["latentmap", "serve", "--host", "0.0.0.0", "--port", "8000"]
