# syntax=docker/dockerfile:1
# One small non-root image, two entrypoints:
#   docker run IMAGE                          -> python -m scheduledjob_api (the default CMD)
#   docker run IMAGE scheduledjob_operator    -> python -m scheduledjob_operator
# The Helm chart passes the module name (and its flags) as the container args.
ARG PYTHON_IMAGE=python:3.11-slim

# --- build: install the project and its pinned dependencies into a self-contained venv -------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Source roots only (see .dockerignore); pyproject.toml finds the packages under common/, operator/, api/ and tools/.
COPY pyproject.toml ./
COPY common ./common
COPY operator ./operator
COPY api ./api
COPY tools ./tools
# Non-editable install; pip byte-compiles, so nothing is written at run time (readOnlyRootFilesystem).
RUN pip install . \
    && pip check \
    && rm -rf /opt/venv/lib/python3.11/site-packages/pip /opt/venv/bin/pip*

# --- runtime -------------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="selfhelp-scheduled-jobs" \
      org.opencontainers.image.description="SelfHelp Admin Scheduled Jobs: kopf operator and FastAPI admin API" \
      org.opencontainers.image.version="0.1.0"
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /tmp
USER 10001:10001
# API port, operator liveness port.
EXPOSE 8080 8081
ENTRYPOINT ["python", "-m"]
CMD ["scheduledjob_api"]
