# One image for every Alchemiser process: workers per queue, beat, Flower, the CLI.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY resilience ./resilience
COPY tasks ./tasks
COPY worker ./worker
RUN pip install --no-cache-dir '.[ops]' \
    && useradd --create-home alchemiser
USER alchemiser
ENV ALCHEMISER_REDIS_URL=redis://redis:6379/0
CMD ["celery", "-A", "worker", "worker", "-Q", "trading,market_data,escalation"]
