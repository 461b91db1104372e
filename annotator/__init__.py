"""The annotation server: Django + DRF for projects, images, masks and events; Celery for
embeddings and exports."""

from .celery import app as celery_app

__all__ = ["celery_app"]
