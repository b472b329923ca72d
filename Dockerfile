# One image for every steep process: the API, workers, the reaper, migrations,
# and `steep serve` (the default command) for a single-container embedded setup.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY core ./core
COPY migrations ./migrations
COPY services ./services
RUN pip install . && rm -rf /src

# Celery warns against running as root, and nothing here needs it.
RUN useradd --create-home --uid 10001 steep
USER steep
WORKDIR /home/steep
ENV STEEP_DATA_DIR=/home/steep/.steep

EXPOSE 8000
CMD ["steep", "serve", "--host", "0.0.0.0", "--port", "8000"]
