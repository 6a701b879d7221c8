"""The running application: ``from worker import app`` (CONTRACT)."""

from worker.app import create_app

app = create_app()

__all__ = ["app", "create_app"]
