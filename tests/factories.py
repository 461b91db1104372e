"""Test factories (factory_boy) and helpers for real photos from ../shared/data."""

from pathlib import Path

import factory
from django.contrib.auth import get_user_model

from annotator.core import services
from annotator.core.models import Project

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
GRABCUT = SHARED_DATA / "grabcut"


def grabcut_photo(name: str = "124080.jpg") -> tuple[str, bytes]:
    return name, (GRABCUT / "data_GT" / name).read_bytes()


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("pw")


def project_with_photos(*, user, photos=("124080.jpg",), categories=("object", "person")) -> Project:
    project = services.project_create(name="Photos", user=user, categories=list(categories))
    services.images_upload(project=project, files=[grabcut_photo(p) for p in photos], user=user)
    return project
