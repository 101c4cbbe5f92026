# riverbed service image: the processor only (Kafka runs in its own container, see docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY stream ./stream
COPY learners ./learners
COPY state ./state
RUN pip install --no-cache-dir . && useradd --create-home --uid 10001 riverbed \
    && mkdir -p /var/lib/riverbed && chown riverbed /var/lib/riverbed
USER riverbed
ENV RIVERBED_STATE_DIR=/var/lib/riverbed \
    RIVERBED_METRICS_HOST=0.0.0.0
EXPOSE 9108
ENTRYPOINT ["riverbed"]
CMD ["run"]
