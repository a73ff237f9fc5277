# syntax=docker/dockerfile:1
# One image for every Marque service. The service to run is the Python module given as the
# container's command, e.g.
#   docker build -t marque:dev .
#   docker run --rm -p 50051:50051 -p 9451:9451 marque:dev services.lead
# Kubernetes sets it with `args: [services.lead]` (k8s/base/services/lead.yaml).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: dependencies into a venv, generated gRPC clients from protos/ ---------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
# A compiler only for a dependency without a wheel for the target platform; it stays here.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY requirements.lock ./
# As `make venv` does: the lock pins every package; pip adds only what pip freeze leaves out
# of it (setuptools, which grpcio-tools requires).
RUN pip install -r requirements.lock && pip check
COPY protos/ protos/
COPY tools/protogen.py tools/protogen.py
COPY clients/python/ clients/python/
RUN python tools/protogen.py

# --- runtime: the venv, the code and the generated clients; no compiler, non-root ---------
FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=dev
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app:/app/clients/python \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MARQUE_BIND_HOST=0.0.0.0 \
    MARQUE_VAR_DIR=/var/lib/marque \
    MARQUE_VERSION=${VERSION}
RUN groupadd --system --gid 10001 marque \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin marque \
    && mkdir -p /var/lib/marque \
    && chown 10001:10001 /var/lib/marque
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY --from=builder /src/clients/python/ clients/python/
COPY mesh/ mesh/
COPY services/ services/
# Byte-compile once here: the root filesystem is read-only at run time.
RUN python -m compileall -q mesh services clients/python
USER 10001:10001
EXPOSE 50051-50063 9451-9463
ENTRYPOINT ["python", "-m"]
CMD ["services.lead"]
