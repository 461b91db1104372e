from django.urls import path

from . import api, api_decode, api_prefill, api_retrain
from . import api_workflow as work  # team work (issue 5)

urlpatterns = [
    path("models/", api.ModelListView.as_view(), name="api-models"),
    path("models/<str:model_id>/decoder.onnx", api.DecoderView.as_view(), name="api-decoder"),
    path("projects/", api.ProjectListView.as_view(), name="api-projects"),
    path("projects/<int:project_id>/", api.ProjectDetailView.as_view(), name="api-project"),
    path("projects/<int:project_id>/model", api.ProjectModelView.as_view(), name="api-project-model"),
    path("projects/<int:project_id>/retrain", api_retrain.ProjectRetrainView.as_view(), name="api-project-retrain"),
    path("retrain/<int:retrain_id>/", api_retrain.RetrainDetailView.as_view(), name="api-retrain"),
    path("projects/<int:project_id>/images/", api.ProjectImagesView.as_view(), name="api-project-images"),
    path("projects/<int:project_id>/export/coco", api.ProjectExportCocoView.as_view(), name="api-export-coco"),
    path("projects/<int:project_id>/exports/", api.ProjectExportsView.as_view(), name="api-project-exports"),
    path("projects/<int:project_id>/imports/coco", api.ProjectImportCocoView.as_view(), name="api-import-coco"),
    # Team work: queue and leases, done, review, assignment, members, statistics
    path("projects/<int:project_id>/queue/next", work.QueueNextView.as_view(), name="api-queue-next"),
    path("projects/<int:project_id>/assign", work.ProjectAssignView.as_view(), name="api-project-assign"),
    path("projects/<int:project_id>/review/", work.ProjectReviewListView.as_view(), name="api-project-review"),
    path("projects/<int:project_id>/members/", work.ProjectMembersView.as_view(), name="api-project-members"),
    path("projects/<int:project_id>/members/<int:user_id>/", work.ProjectMemberDetailView.as_view(),
         name="api-project-member"),
    path("projects/<int:project_id>/stats", work.ProjectStatsView.as_view(), name="api-project-stats"),
    path("projects/<int:project_id>/stats.csv", work.ProjectStatsCsvView.as_view(), name="api-project-stats-csv"),
    path("images/<int:image_id>/lease", work.ImageLeaseView.as_view(), name="api-image-lease"),
    path("images/<int:image_id>/done", work.ImageDoneView.as_view(), name="api-image-done"),
    path("images/<int:image_id>/review", work.ImageReviewView.as_view(), name="api-image-review"),
    path("annotations/<int:annotation_id>/review", work.AnnotationReviewView.as_view(), name="api-annotation-review"),
    path("exports/<int:export_id>/", api.ExportDetailView.as_view(), name="api-export"),
    path("exports/<int:export_id>/download", api.ExportDownloadView.as_view(), name="api-export-download"),
    path("images/<int:image_id>/", api.ImageDetailView.as_view(), name="api-image"),
    path("images/<int:image_id>/file", api.ImageFileView.as_view(), name="api-image-file"),
    path("images/<int:image_id>/embedding", api.ImageEmbeddingView.as_view(), name="api-image-embedding"),
    path("images/<int:image_id>/decode", api_decode.ImageDecodeView.as_view(), name="api-image-decode"),
    path("images/<int:image_id>/annotations/", api.ImageAnnotationsView.as_view(), name="api-image-annotations"),
    path("annotations/<int:annotation_id>/", api.AnnotationDetailView.as_view(), name="api-annotation"),
    # Semi-automatic mode (pre-fill proposals)
    path("projects/<int:project_id>/prefill", api_prefill.ProjectPrefillView.as_view(), name="api-project-prefill"),
    path("projects/<int:project_id>/prefill/run", api_prefill.ProjectPrefillRunView.as_view(),
         name="api-project-prefill-run"),
    path("images/<int:image_id>/proposals/", api_prefill.ImageProposalsView.as_view(), name="api-image-proposals"),
    path("images/<int:image_id>/proposals/accept", api_prefill.ImageProposalsAcceptView.as_view(),
         name="api-image-proposals-accept"),
    path("proposals/<int:proposal_id>/", api_prefill.ProposalDetailView.as_view(), name="api-proposal"),
    path("proposals/<int:proposal_id>/accept", api_prefill.ProposalAcceptView.as_view(), name="api-proposal-accept"),
    path("proposals/<int:proposal_id>/reject", api_prefill.ProposalRejectView.as_view(), name="api-proposal-reject"),
]
