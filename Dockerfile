# One image, several roles: `sluice api | operator | worker`.
# Stage 1 builds a wheel and its dependencies into a virtualenv; stage 2 copies only that virtualenv into a slim
# runtime and runs as an unprivileged user, so no compiler or pip cache ships in the image.
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# gcc builds the worker's C speedups (sluice._speedups, _pgrows, _eventjson); only this stage has it.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
RUN python -m venv /opt/sluice
COPY pyproject.toml setup.py README.md ./
COPY src ./src
RUN /opt/sluice/bin/pip install --upgrade pip && /opt/sluice/bin/pip install .

FROM python:3.11-slim-bookworm
LABEL org.opencontainers.image.title="sluice" \
      org.opencontainers.image.description="Kubernetes-native change-data-capture" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 sluice && useradd --system --uid 10001 --gid sluice --home-dir /home/sluice --create-home sluice
COPY --from=build /opt/sluice /opt/sluice
ENV PATH=/opt/sluice/bin:$PATH PYTHONUNBUFFERED=1 SLUICE_LOG_FORMAT=json
USER 10001:10001
WORKDIR /home/sluice
ENTRYPOINT ["sluice"]
CMD ["--help"]
