"""Create the demo user and a demo project of real photos from ../shared/data."""

from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from annotator.core import services
from annotator.core.models import Project

DEMO_FILES = [
    "grabcut/data_GT/124080.jpg", "grabcut/data_GT/153077.jpg", "grabcut/data_GT/189080.jpg",
    "grabcut/data_GT/21077.jpg", "grabcut/data_GT/37073.jpg", "grabcut/data_GT/65019.jpg",
    "grabcut/data_GT/banana1.bmp", "grabcut/data_GT/llama.bmp", "grabcut/data_GT/sheep.jpg",
    "grabcut/data_GT/teddy.jpg",
]


class Command(BaseCommand):
    help = ("Create user 'demo' (password 'demo', site admin), a project of real photos, and a team for it: "
            "'annotator', 'reviewer' and 'manager' with the same password (idempotent).")

    def add_arguments(self, parser):
        parser.add_argument("--username", default="demo")
        parser.add_argument("--password", default="demo")
        parser.add_argument("--limit", type=int, default=len(DEMO_FILES))

    def handle(self, *args, username, password, limit, **options):
        User = get_user_model()
        user, created = User.objects.get_or_create(username=username, defaults={"is_staff": True, "is_superuser": True})
        if created:
            user.set_password(password)
            user.save()
        name = "Demo: GrabCut photos"
        existing = Project.objects.filter(name=name, members=user).first()
        if existing is not None:
            self._team(existing, password)
            self.stdout.write(f"demo project exists; user {username!r} ready")
            return
        data_dir = Path(settings.SHARED_DATA_DIR)
        files = []
        for rel in DEMO_FILES[:limit]:
            path = data_dir / rel
            if path.exists():
                files.append((path.name, path.read_bytes()))
        if not files:
            raise CommandError(f"no demo photos found under {data_dir} (set ANNOTATOR_SHARED_DATA)")
        project = services.project_create(name=name, user=user,
                                          categories=["object", "person", "animal", "vehicle", "plant"])
        services.images_upload(project=project, files=files, user=user)
        self._team(project, password)
        self.stdout.write(f"created project {project.pk} with {len(files)} photos; user {username!r}; "
                          f"team: annotator, reviewer, manager")

    def _team(self, project: Project, password: str) -> None:
        """One member per role, so the demo shows what each may do (same password as demo)."""
        User = get_user_model()
        for role in ("annotator", "reviewer", "manager"):
            member, created = User.objects.get_or_create(username=role)
            if created:
                member.set_password(password)
                member.save()
            if not project.members.filter(pk=member.pk).exists():
                services.project_add_member(project=project, user=member, role=role)
