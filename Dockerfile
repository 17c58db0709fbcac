# The image the Helm chart runs (`ats worker`, `ats api`): helm/ats/values.yaml `image.*`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY availability ./availability
COPY cacheclient ./cacheclient
COPY streams ./streams
COPY api ./api
RUN pip install . \
 && useradd --uid 10001 --user-group --no-create-home --home-dir /nonexistent ats \
 && install -d -o 10001 -g 10001 /var/lib/ats

# Non-root; the chart mounts the worker's volume at /var/lib/ats (ATS_DATA_DIR) and /tmp as emptyDir.
USER 10001:10001
ENV ATS_DATA_DIR=/var/lib/ats \
    ATS_API_HOST=0.0.0.0
WORKDIR /var/lib/ats
EXPOSE 8080
ENTRYPOINT ["ats"]
CMD ["--help"]
