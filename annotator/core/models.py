"""Projects, images, embeddings, annotations and the events that measure annotation work."""

from django.conf import settings
from django.db import models
from django.utils import timezone


class ModelVersion(models.Model):
    """One set of SAM weights the server can embed with and serve a decoder for.

    Embeddings, decoders and annotation events are keyed by ``model_id``
    (``<architecture>-<first 12 hex of the weights' SHA-256>``, engine.identity), so a
    version's id changes whenever its weights do. Versions come from three places: the
    shipped (configured) default, registered on first use; official checkpoints installed
    with ``manage.py model_install``; and retraining (a ``parent`` and its ``metrics``).
    Only ``promoted`` versions may be chosen for a project.
    """

    class Source(models.TextChoices):
        SHIPPED = "shipped"
        INSTALLED = "installed"
        RETRAINED = "retrained"

    model_id = models.CharField(max_length=100, unique=True)
    name = models.CharField(max_length=200, help_text="what people see: e.g. 'SAM ViT-H (official)'")
    architecture = models.CharField(max_length=20, help_text="engine.MODEL_REGISTRY name: default, vit_b, vit_l, vit_h")
    checkpoint = models.CharField(max_length=1000, blank=True,
                                  help_text="absolute path of the weights file, readable by every worker; "
                                            "blank = the shipped engine/weights/default.safetensors")
    sha256 = models.CharField(max_length=64, blank=True, help_text="of the weights file; blank when untrained")
    source = models.CharField(max_length=10, choices=Source.choices)
    parent = models.ForeignKey("self", on_delete=models.PROTECT, null=True, blank=True, related_name="children",
                               help_text="the version a retrained one was fine-tuned from")
    metrics = models.JSONField(default=dict, blank=True,
                               help_text="evaluation results (e.g. held-out NoC@85/90) and decoder export checks")
    promoted = models.BooleanField(default=True, help_text="may be chosen for projects (a retrained candidate "
                                                           "that did not beat its parent stays unpromoted)")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.model_id})"


class Project(models.Model):
    name = models.CharField(max_length=200)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="Membership", related_name="projects")
    prefill_enabled = models.BooleanField(
        default=True, help_text="generate pre-fill proposals for each image once its embedding exists"
    )
    automatic_params = models.JSONField(
        default=dict, blank=True, help_text="overrides of engine.AutomaticMaskParams for this project's proposals"
    )
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="projects",
        help_text="the model its images are embedded with and its browsers decode with; "
                  "none = the server's configured default model (model_versions.model_version_default)",
    )

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        ADMIN = "admin"
        MANAGER = "manager"
        REVIEWER = "reviewer"
        ANNOTATOR = "annotator"

    project = models.ForeignKey(Project, on_delete=models.CASCADE)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.ANNOTATOR)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "user"], name="unique_membership")]


class Category(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="categories")
    name = models.CharField(max_length=100)
    color = models.CharField(max_length=7, default="#1f77b4")

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="unique_category_name")]

    def __str__(self) -> str:
        return self.name


class Image(models.Model):
    class EmbeddingStatus(models.TextChoices):
        PENDING = "pending"
        READY = "ready"
        FAILED = "failed"

    class ProposalsStatus(models.TextChoices):
        NONE = "none"
        PENDING = "pending"
        RUNNING = "running"
        READY = "ready"
        FAILED = "failed"

    class WorkStatus(models.TextChoices):
        NEW = "new"
        IN_PROGRESS = "in_progress"
        DONE = "done"
        REVIEWED = "reviewed"
        REJECTED = "rejected"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="images")
    file = models.FileField(upload_to="images/%Y/%m/")
    # The photo as the user sees it (EXIF orientation applied), when that differs from `file`.
    display_file = models.FileField(upload_to="images/display/%Y/%m/", blank=True)
    file_name = models.CharField(max_length=255)
    width = models.PositiveIntegerField(help_text="pixels, after EXIF orientation")
    height = models.PositiveIntegerField(help_text="pixels, after EXIF orientation")
    checksum = models.CharField(max_length=64, help_text="SHA-256 of the uploaded bytes (an upload whose bytes "
                                                         "are already in the project is not stored again)")
    embedding_status = models.CharField(
        max_length=10, choices=EmbeddingStatus.choices, default=EmbeddingStatus.PENDING
    )
    embedding_error = models.TextField(blank=True)
    # For the reconciler (services.embeddings_reconcile): when the embedding was last queued,
    # and how many runs started without finishing (their worker died: a poison image).
    embedding_queued_at = models.DateTimeField(null=True, blank=True, default=timezone.now)
    embedding_unfinished_runs = models.PositiveSmallIntegerField(default=0)
    # Work queue (issue 5): who works on it now (a lease), who should, and where it stands.
    status = models.CharField(max_length=12, choices=WorkStatus.choices, default=WorkStatus.NEW)
    assignee = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                 related_name="+", help_text="set by a manager; none = open to every annotator")
    lease_holder = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                     related_name="+")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    lease_token = models.CharField(max_length=64, blank=True, default="",
                                   help_text="the page (browser tab) of the holder that holds the lease: a random id "
                                             "it sends with take/renew/release; blank for clients that send none")
    done_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                related_name="+", help_text="the annotator who marked it done (a rejection goes back to them)")
    proposals_status = models.CharField(
        max_length=10, choices=ProposalsStatus.choices, default=ProposalsStatus.NONE,
        help_text="automatic mask generation for this image (semi-automatic mode)",
    )
    proposals_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["project", "embedding_status"]), models.Index(fields=["project", "status"]),
                   models.Index(fields=["project", "checksum"])]

    def __str__(self) -> str:
        return self.file_name


class Embedding(models.Model):
    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="embeddings")
    model_id = models.CharField(max_length=100)
    file = models.FileField(upload_to="embeddings/")
    dtype = models.CharField(max_length=10, default="float16")
    shape = models.JSONField(default=list)
    sha256 = models.CharField(max_length=64)
    compute_seconds = models.FloatField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["image", "model_id"], name="unique_embedding_per_model")]


class Annotation(models.Model):
    class Origin(models.TextChoices):
        MANUAL = "manual"
        PREFILL_ACCEPTED = "prefill_accepted"
        PREFILL_EDITED = "prefill_edited"
        IMPORTED = "imported"

    class ReviewStatus(models.TextChoices):
        PENDING = "pending"
        APPROVED = "approved"
        REJECTED = "rejected"

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="annotations")
    category = models.ForeignKey(Category, on_delete=models.RESTRICT, null=True, blank=True, related_name="+")
    rle = models.JSONField(help_text='COCO compressed RLE {"size": [H, W], "counts": str}')
    bbox = models.JSONField(help_text="XYWH in pixels of the EXIF-corrected image")
    area = models.PositiveIntegerField(help_text="decoded pixel count")
    prompts = models.JSONField(default=dict)
    predicted_iou = models.FloatField(null=True, blank=True)
    candidate_index = models.SmallIntegerField(null=True, blank=True)
    model_id = models.CharField(max_length=100, blank=True)
    origin = models.CharField(max_length=20, choices=Origin.choices, default=Origin.MANUAL)
    review_status = models.CharField(max_length=10, choices=ReviewStatus.choices, default=ReviewStatus.PENDING)
    iscrowd = models.BooleanField(default=False, help_text="a COCO crowd region (imported); exported with iscrowd 1")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    version = models.PositiveIntegerField(default=1, help_text="incremented on every edit (optimistic locking)")
    client_key = models.CharField(max_length=64, blank=True, default="",
                                  help_text="the browser's idempotency key of the save (a retry returns this row)")
    review_comment = models.TextField(blank=True, help_text="the reviewer's reason, shown to the annotator")
    reviewed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                    related_name="+")
    reviewed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["image", "review_status"])]
        constraints = [models.UniqueConstraint(fields=["image", "author", "client_key"],
                                               condition=~models.Q(client_key=""), name="unique_annotation_client_key")]


class Proposal(models.Model):
    """A pre-fill mask the model proposed (or a file imported as proposals), awaiting a person.

    Kept apart from annotations (SAM paper §4, stage 2): accepting one creates an
    ``Annotation`` with origin ``prefill_accepted`` (as proposed) or ``prefill_edited``
    (changed first); rejecting it keeps the row, so acceptance rates can be measured.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        ACCEPTED = "accepted"
        EDITED = "edited"
        REJECTED = "rejected"

    class Source(models.TextChoices):
        AUTOMATIC = "automatic"
        IMPORTED = "imported"

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="proposals")
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.AUTOMATIC)
    model_id = models.CharField(max_length=100, blank=True)
    category = models.ForeignKey(Category, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    rle = models.JSONField(help_text='COCO compressed RLE {"size": [H, W], "counts": str}')
    bbox = models.JSONField(help_text="XYWH in pixels of the EXIF-corrected image")
    area = models.PositiveIntegerField(help_text="decoded pixel count")
    predicted_iou = models.FloatField(null=True, blank=True)
    stability_score = models.FloatField(null=True, blank=True)
    point_coords = models.JSONField(default=list, blank=True, help_text="[[x, y]] image pixels of the prompt")
    crop_box = models.JSONField(null=True, blank=True, help_text="XYWH of the crop the mask came from")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    annotation = models.ForeignKey(
        "Annotation", on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        help_text="the annotation made by accepting this proposal",
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-predicted_iou", "id"]
        indexes = [models.Index(fields=["image", "status"])]


class ImageReview(models.Model):
    """A reviewer's verdict on a done image; a rejection sends the image back to its annotator
    with ``comment`` (the history stays: one row per review)."""

    class Decision(models.TextChoices):
        APPROVED = "approved"
        REJECTED = "rejected"

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="reviews")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    decision = models.CharField(max_length=10, choices=Decision.choices)
    comment = models.TextField(blank=True)
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                  related_name="+", help_text="who had marked the image done")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]


class AnnotationEvent(models.Model):
    """One unit of annotation work, for throughput statistics (SAM paper §4: seconds per mask)."""

    class Kind(models.TextChoices):
        CREATE = "create"
        EDIT = "edit"
        DELETE = "delete"
        PROPOSAL_REJECT = "proposal_reject"
        REVIEW_APPROVE = "review_approve"
        REVIEW_REJECT = "review_reject"

    kind = models.CharField(max_length=20, choices=Kind.choices)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="+")
    annotation_id = models.BigIntegerField(null=True)
    model_id = models.CharField(max_length=100, blank=True)
    origin = models.CharField(max_length=20, blank=True)
    positive_clicks = models.PositiveIntegerField(default=0)
    negative_clicks = models.PositiveIntegerField(default=0)
    boxes = models.PositiveIntegerField(default=0)
    candidate_index = models.SmallIntegerField(null=True)
    active_ms = models.PositiveIntegerField(
        null=True, help_text="browser-measured active time: first prompt to save, idle gaps over 30 s removed")
    mask_author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                    related_name="+", help_text="for review events: who made the reviewed mask")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["project", "created_at"])]


class ExportJob(models.Model):
    """A project export written by a worker into ``file`` (DESIGN.md "Masks on the wire")."""

    class Format(models.TextChoices):
        COCO = "coco", "COCO instances JSON, compressed RLE"
        COCO_POLYGONS = "coco_polygons", "COCO instances JSON, polygons (holes bridged)"
        SA1B = "sa1b", "SA-1B per-image JSON, zip"
        PNG = "png", "per-image PNG instance masks, zip"

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"
        EXPIRED = "expired"  # done, then its file deleted after ANNOTATOR_EXPORT_RETENTION_HOURS

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="exports")
    format = models.CharField(max_length=20, choices=Format.choices)
    options = models.JSONField(default=dict, help_text='{"only_approved": bool, "include_images": bool}')
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    progress = models.FloatField(default=0.0, help_text="0..1, annotations written / annotations to write")
    stats = models.JSONField(default=dict, help_text="counts and, for polygons, the reconstruction error")
    file = models.FileField(upload_to="exports/%Y/%m/", blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]


class RetrainJob(models.Model):
    """A fine-tune of a project's model version on its accepted masks (issue 9, the data
    engine's model-in-the-loop), run by a worker (``retrain.retrain_run``).

    ``metrics`` holds the held-out evaluation of the base and of the candidate (NoC@85,
    NoC@90, mIoU by click; no per-object curves), the train/held-out counts, the fine-tune's
    steps/seconds/losses and the ``decision`` (``promoted`` or ``rejected``) with its
    ``reason``. ``new_version`` is the candidate registered from this job (promoted or not).
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="retrain_jobs")
    base_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+",
                                     help_text="the version fine-tuned (the project's when the job was started)")
    new_version = models.ForeignKey(ModelVersion, on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
                                    help_text="the fine-tuned candidate, promoted or not")
    options = models.JSONField(default=dict, blank=True, help_text='{"steps": int}')
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    phase = models.CharField(max_length=200, blank=True, help_text="what the worker is doing now")
    progress = models.FloatField(default=0.0, help_text="0..1 over the whole job")
    metrics = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True,
                                        help_text="last progress save of the running worker (a redelivered task "
                                                  "takes over a running job only once this is stale)")
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
