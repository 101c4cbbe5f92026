# riverbed service image: the processor only (Kafka, Prometheus and Grafana run in their own
# containers, see docker-compose.yml). Non-root, state on a volume, metrics and HTTP API bound to
# 0.0.0.0 inside the container only (docker-compose.yml publishes them on the host's loopback).
FROM python:3.11.14-slim-bookworm
WORKDIR /app
COPY pyproject.toml README.md ./
COPY stream ./stream
COPY learners ./learners
COPY state ./state
RUN pip install --no-cache-dir . && useradd --create-home --uid 10001 riverbed \
    && mkdir -p /var/lib/riverbed && chown riverbed /var/lib/riverbed
USER riverbed
ENV RIVERBED_STATE_DIR=/var/lib/riverbed \
    RIVERBED_METRICS_HOST=0.0.0.0 \
    RIVERBED_HTTP_HOST=0.0.0.0 \
    MPLBACKEND=Agg
VOLUME ["/var/lib/riverbed"]
EXPOSE 8080 9108
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
ENTRYPOINT ["riverbed"]
CMD ["run"]
