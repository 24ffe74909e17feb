# A small image for the sidecar container: the package and its runtime dependencies only.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY sidecar ./sidecar
COPY policy_bundles ./policy_bundles
RUN pip wheel --no-cache-dir --wheel-dir /wheels -c constraints.txt .

FROM python:3.11-slim
RUN useradd --uid 10001 --no-create-home sidecar
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 10001
# Only the probes (/healthz, /readyz) face the pod network; the proxy and the admin
# listener (bundle status, metrics) stay on loopback.
EXPOSE 8703
ENTRYPOINT ["sidecar"]
CMD ["run", "--http", "127.0.0.1:8700", "--admin", "127.0.0.1:8702", "--probes", "0.0.0.0:8703"]
