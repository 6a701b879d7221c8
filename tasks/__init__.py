"""Alchemiser's trading actions as Celery tasks, and the broker adapters they call."""
