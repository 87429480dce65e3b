# freshrag: CLI, watcher and API in one image (CPU only). Used by docker-compose.yml.
FROM python:3.11-slim-bookworm

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    FRESHRAG_HOME=/var/lib/freshrag

# unstructured: libmagic for file types, poppler for PDFs, libgl/glib for opencv-headless.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libmagic1 poppler-utils libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# The CPU torch wheel first, in its own layer: the project's torch pin is then already met.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

COPY pyproject.toml README.md ./
COPY freshrag ./freshrag
COPY connectors ./connectors
COPY flows ./flows
RUN pip install . \
    # unstructured's PDF code imports it; its own deps (timm -> torchvision) would pull CUDA.
    && pip install --no-deps "unstructured-inference==1.6.14" \
    && python -c "import freshrag.cli"

RUN useradd --create-home --uid 1000 freshrag \
    && mkdir -p /var/lib/freshrag && chown freshrag /var/lib/freshrag
USER freshrag
VOLUME ["/var/lib/freshrag"]
EXPOSE 8000
CMD ["freshrag", "serve", "--host", "0.0.0.0", "--port", "8000"]
