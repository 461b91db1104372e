/**
 * The one API client of the annotate page: a function per endpoint of docs/api.md,
 * session auth with the CSRF token from the `csrftoken` cookie, and one error type
 * (ApiError) that maps DRF's error shapes.
 */
import type { CocoRle } from './lib/rle';
import type { Box } from './lib/prompts';
import type { ProjectCreateBody } from './lib/projectForm';
import type { EmbeddingCounts, ImageCounts, MemberInfo, ProjectUpdateBody, ProposalCounts, Role } from './lib/projectSettings';
import type { RetrainJob } from './lib/retrain';
import type { ExportJob, ExportStartBody, ImportMode, ImportReport } from './lib/exports';

export interface Category {
  id: number;
  name: string;
  color: string;
}

export interface Project {
  id: number;
  name: string;
  model_id: string;
  categories: Category[];
  image_count: number;
  /** Pre-fill proposals are generated for its images. */
  prefill_enabled?: boolean;
  /** The user's role in the project (null: a site admin who is no member) and what it allows. */
  role?: 'admin' | 'manager' | 'reviewer' | 'annotator' | null;
  actions?: string[];
}

/** Work-queue state of an image (docs/api.md "Work queue"). */
export type WorkStatus = 'new' | 'in_progress' | 'done' | 'reviewed' | 'rejected';

export interface Lease {
  holder: string;
  expires_at: string;
}

export interface ImageReview {
  id: number;
  image: number;
  decision: 'approved' | 'rejected';
  comment: string;
  reviewer: string;
  annotator: string | null;
  created_at: string;
}

export type EmbeddingStatus = 'pending' | 'ready' | 'failed';
export type ProposalsStatus = 'none' | 'pending' | 'running' | 'ready' | 'failed';

export interface ImageInfo {
  id: number;
  project: number;
  file_name: string;
  width: number;
  height: number;
  file_url: string;
  embedding_status: EmbeddingStatus;
  embedding_error: string | null;
  model_id: string | null;
  embedding_url: string;
  annotation_count: number;
  /** Automatic pre-fill of this image: none (off / not yet), pending, running, ready, failed. */
  proposals_status?: ProposalsStatus;
  proposals_error?: string;
  next_id?: number | null;
  prev_id?: number | null;
  /** What next_id / prev_id follow: the caller's work queue (annotators) or the project's ids. */
  neighbour_order?: 'queue' | 'project';
  status?: WorkStatus;
  assignee?: string | null;
  done_by?: string | null;
  /** Who holds the image now (work queue lease), or null. */
  lease?: Lease | null;
  /** Image detail only: the latest review verdict, or null. */
  last_review?: ImageReview | null;
}

export interface ModelInfo {
  model_id: string;
  name: string;
  decoder_url: string;
  /** GET /api/models/ also gives the version's id (what a project is set to) and kind. */
  id?: number;
  architecture?: string;
  source?: 'shipped' | 'installed' | 'retrained';
}

export interface PromptsPayload {
  point_coords: [number, number][];
  point_labels: number[];
  box: Box | null;
  /** Present when the mask was edited by hand with the brush / eraser (docs/api.md). */
  brush?: BrushRecord;
}

/** How a mask was edited by hand: strokes made, pixels painted in and erased (summed over
 * the edits of the annotation). */
export interface BrushRecord {
  strokes: number;
  painted: number;
  erased: number;
}

/** `PATCH /api/annotations/<id>/`: `version` is the one the edit started from. */
export interface AnnotationUpdate {
  version: number;
  segmentation?: CocoRle;
  category?: number | null;
  prompts?: PromptsPayload;
  active_ms?: number;
}

export interface AnnotationCreate {
  category: number | null;
  segmentation: CocoRle;
  prompts: PromptsPayload;
  predicted_iou: number;
  candidate_index: number;
  model_id: string;
  active_ms: number;
  /** Idempotency key: a retry with the same key gets the annotation stored the first time. */
  client_key?: string;
}

export interface Annotation extends AnnotationCreate {
  id: number;
  image: number;
  bbox: [number, number, number, number];
  area: number;
  author: string | number | null;
  version: number;
  origin?: 'manual' | 'prefill_accepted' | 'prefill_edited' | 'imported';
  review_status?: 'pending' | 'approved' | 'rejected';
  review_comment?: string;
  reviewed_by?: string | null;
  created_at: string;
  updated_at: string;
}

/** A pre-fill mask proposed by the automatic mask generator (docs/api.md "Pre-fill"). */
export interface Proposal {
  id: number;
  image: number;
  source: 'automatic' | 'imported';
  model_id: string;
  category: number | null;
  segmentation: CocoRle;
  /** XYWH, image pixels. */
  bbox: [number, number, number, number];
  area: number;
  predicted_iou: number | null;
  stability_score: number | null;
  /** [[x, y]]: the grid point that made it, image pixels. */
  point_coords: [number, number][];
  status: 'pending' | 'accepted' | 'edited' | 'rejected';
}

/** Accept as proposed (empty body) or as edited (with the edited mask and its prompts). */
export interface ProposalAccept {
  category?: number | null;
  segmentation?: CocoRle;
  prompts?: PromptsPayload;
  predicted_iou?: number;
  candidate_index?: number;
  model_id?: string;
  active_ms?: number;
}

/** Any non-2xx answer, with DRF's `{"detail": ...}` or `{"field": [msgs]}` unpacked. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly detail: string | null,
    readonly fieldErrors: Record<string, string[]>,
    readonly body: unknown,
  ) {
    super(message);
    this.name = 'ApiError';
  }

  static async fromResponse(resp: Response): Promise<ApiError> {
    let body: unknown = null;
    const text = await resp.text().catch(() => '');
    try {
      body = text ? JSON.parse(text) : null;
    } catch {
      body = text;
    }
    return ApiError.fromBody(resp.status, resp.statusText, body);
  }

  static fromBody(status: number, statusText: string, body: unknown): ApiError {
    let detail: string | null = null;
    const fields: Record<string, string[]> = {};
    if (body && typeof body === 'object' && !Array.isArray(body)) {
      for (const [k, v] of Object.entries(body as Record<string, unknown>)) {
        if (k === 'detail' && typeof v === 'string') detail = v;
        else fields[k] = flattenMessages(v);
      }
    } else if (Array.isArray(body)) {
      fields['non_field_errors'] = flattenMessages(body);
    } else if (typeof body === 'string' && body.trim() && !body.trimStart().startsWith('<')) {
      detail = body.trim().slice(0, 300);
    }
    // DRF sends either {"detail": ...} (other keys are then data, e.g. "current" on a 409)
    // or field errors {"field": [msgs]}.
    const parts: string[] = [];
    if (detail) parts.push(detail);
    else {
      for (const [k, msgs] of Object.entries(fields)) {
        parts.push(k === 'non_field_errors' ? msgs.join(' ') : `${k}: ${msgs.join(' ')}`);
      }
    }
    const message = parts.length ? parts.join('; ') : `HTTP ${status} ${statusText}`.trim();
    return new ApiError(status, message, detail, fields, body);
  }
}

function flattenMessages(v: unknown): string[] {
  if (Array.isArray(v)) return v.flatMap(flattenMessages);
  if (v && typeof v === 'object') {
    return Object.entries(v as Record<string, unknown>).flatMap(([k, x]) => flattenMessages(x).map((m) => `${k}: ${m}`));
  }
  return [String(v)];
}

export function csrfToken(cookie: string = typeof document !== 'undefined' ? document.cookie : ''): string | null {
  for (const part of cookie.split(';')) {
    const [k, ...rest] = part.trim().split('=');
    if (k === 'csrftoken') return decodeURIComponent(rest.join('='));
  }
  return null;
}

let apiRoot = '/api/';

/** Set from the page's `data-api-root`. */
export function setApiRoot(root: string): void {
  apiRoot = root.endsWith('/') ? root : `${root}/`;
}

function url(path: string): string {
  return path.startsWith('/') ? path : apiRoot + path;
}

async function request(path: string, init: RequestInit = {}): Promise<Response> {
  const method = (init.method ?? 'GET').toUpperCase();
  const headers = new Headers(init.headers);
  if (!headers.has('Accept')) headers.set('Accept', 'application/json');
  if (!['GET', 'HEAD', 'OPTIONS'].includes(method)) {
    const token = csrfToken();
    if (token) headers.set('X-CSRFToken', token);
  }
  let resp: Response;
  try {
    resp = await fetch(url(path), { ...init, headers, credentials: 'same-origin' });
  } catch (e) {
    if ((e as Error).name === 'TimeoutError') throw new ApiError(0, 'no answer from the server in time', null, {}, null);
    throw new ApiError(0, `network error: ${(e as Error).message}`, null, {}, null);
  }
  if (!resp.ok) throw await ApiError.fromResponse(resp);
  return resp;
}

async function json<T>(path: string, init?: RequestInit): Promise<T> {
  const resp = await request(path, init);
  return (resp.status === 204 ? null : await resp.json()) as T;
}

function jsonBody(method: string, body: unknown): RequestInit {
  return { method, body: JSON.stringify(body), headers: { 'Content-Type': 'application/json' } };
}

export const listModels = (): Promise<ModelInfo[]> => json('models/');
/** `POST /api/projects/`: the creator becomes its admin. 400 field errors: see lib/projectForm.ts. */
export const createProject = (body: ProjectCreateBody): Promise<Project> => json('projects/', jsonBody('POST', body));
export const getProject = (projectId: number): Promise<Project> => json(`projects/${projectId}/`);
export const listImages = (projectId: number): Promise<ImageInfo[]> => json(`projects/${projectId}/images/`);
export const getImage = (imageId: number): Promise<ImageInfo> => json(`images/${imageId}/`);
export const listAnnotations = (imageId: number): Promise<Annotation[]> => json(`images/${imageId}/annotations/`);
/** @param timeoutMs no answer by then: the request is aborted (ApiError status 0, "no answer"). */
export const createAnnotation = (imageId: number, body: AnnotationCreate, timeoutMs?: number): Promise<Annotation> =>
  json(`images/${imageId}/annotations/`, { ...jsonBody('POST', body), ...(timeoutMs ? { signal: AbortSignal.timeout(timeoutMs) } : {}) });
/** Edit a saved annotation; 409 (ApiError, body `{detail, current}`) when someone changed it
 * since `body.version`. */
export const updateAnnotation = (annotationId: number, body: AnnotationUpdate): Promise<Annotation> =>
  json(`annotations/${annotationId}/`, jsonBody('PATCH', body));
export const deleteAnnotation = (annotationId: number): Promise<null> =>
  json(`annotations/${annotationId}/`, { method: 'DELETE' });

export const listProposals = (imageId: number): Promise<Proposal[]> => json(`images/${imageId}/proposals/`);
export const acceptProposal = (proposalId: number, body: ProposalAccept): Promise<Annotation> =>
  json(`proposals/${proposalId}/accept`, jsonBody('POST', body));
export const rejectProposal = (proposalId: number, activeMs: number | null): Promise<Proposal> =>
  json(`proposals/${proposalId}/reject`, jsonBody('POST', { active_ms: activeMs }));
export const acceptProposalsAbove = (imageId: number, minPredictedIou: number, category: number | null | undefined): Promise<Annotation[]> =>
  json(`images/${imageId}/proposals/accept`, jsonBody('POST', category === undefined ? { min_predicted_iou: minPredictedIou } : { min_predicted_iou: minPredictedIou, category }));

/** Retraining (managers): the project's jobs, latest first; start one (202); one job. */
export const listRetrainJobs = (projectId: number): Promise<RetrainJob[]> => json(`projects/${projectId}/retrain`);
export const startRetrain = (projectId: number, steps?: number): Promise<RetrainJob> =>
  json(`projects/${projectId}/retrain`, jsonBody('POST', steps === undefined ? {} : { steps }));
export const getRetrainJob = (jobId: number): Promise<RetrainJob> => json(`retrain/${jobId}/`);
/** `GET|PATCH /api/projects/<id>/model`: the project's version and how far its images are embedded with it. */
export interface ProjectModel {
  model_version: ModelInfo & { id: number };
  follows_default: boolean;
  embeddings: EmbeddingCounts;
}

/** The project's model version (name, model_id) and its embedding progress. */
export const getProjectModel = (projectId: number): Promise<ProjectModel> => json(`projects/${projectId}/model`);
/** Switch the project's version (null: follow the server's default); its images are embedded again. */
export const setProjectModel = (projectId: number, modelVersion: number | null): Promise<ProjectModel> =>
  json(`projects/${projectId}/model`, jsonBody('PATCH', { model_version: modelVersion }));

/** `PATCH /api/projects/<id>/`: rename, add labels, rename / recolour labels by id (lib/projectSettings.ts). */
export const updateProject = (projectId: number, body: ProjectUpdateBody): Promise<Project> =>
  json(`projects/${projectId}/`, jsonBody('PATCH', body));
/** Delete a label; 409 (`code: "category_in_use"`, `detail` in words) when saved masks carry it. */
export const deleteCategory = (projectId: number, categoryId: number): Promise<null> =>
  json(`projects/${projectId}/categories/${categoryId}/`, { method: 'DELETE' });

/** `GET /api/projects/<id>/prefill`: settings (parameters with defaults merged) and progress counts. */
export interface PrefillState {
  enabled: boolean;
  params: Record<string, number>;
  overrides: Record<string, number>;
  images: ImageCounts;
  proposals: ProposalCounts;
  annotations_by_origin: Record<string, number>;
}

export const getPrefill = (projectId: number): Promise<PrefillState> => json(`projects/${projectId}/prefill`);
/** 400 `{"params": {"<name>": [msgs]}}` for bad parameters (nothing stored then). */
export const updatePrefill = (projectId: number, body: { enabled?: boolean; params?: Record<string, number> }): Promise<PrefillState> =>
  json(`projects/${projectId}/prefill`, jsonBody('PATCH', body));
/** (Re)generate proposals for the project's embedded images not already queued. */
export const runPrefill = (projectId: number): Promise<{ queued: number }> =>
  json(`projects/${projectId}/prefill/run`, jsonBody('POST', {}));

export const listMembers = (projectId: number): Promise<MemberInfo[]> => json(`projects/${projectId}/members/`);
/** 400 `{"username": [...]}` for an unknown user or one already a member. */
export const addMember = (projectId: number, username: string, role: Role): Promise<MemberInfo> =>
  json(`projects/${projectId}/members/`, jsonBody('POST', { username, role }));
/** 400 `{"role": ["A project keeps at least one admin."]}` for the last admin. */
export const updateMember = (projectId: number, userId: number, role: Role): Promise<MemberInfo> =>
  json(`projects/${projectId}/members/${userId}/`, jsonBody('PATCH', { role }));
export const removeMember = (projectId: number, userId: number): Promise<null> =>
  json(`projects/${projectId}/members/${userId}/`, { method: 'DELETE' });

/** The next image of the user's queue, leased to them; null when the queue is empty (204). */
export const queueNext = (projectId: number): Promise<ImageInfo | null> => json(`projects/${projectId}/queue/next`, { method: 'POST' });
/**
 * Take (`renew` false: opening the image) or renew (heartbeat) the image's lease for this
 * page, `token` being the page's own random id (so two tabs of one user do not share it).
 * 409 (ApiError, body.lease) when someone else holds it; 409 with body.code
 * `lease_elsewhere` when renewing a lease another tab of the user took over since.
 * `takeover` (a manager's or admin's "Take over"): taken also from someone else who holds
 * it (403 for other roles).
 */
export const acquireLease = (imageId: number, token?: string, renew = false, takeover = false): Promise<Lease & { image: number; lease_seconds: number }> =>
  json(`images/${imageId}/lease`, token ? jsonBody('POST', takeover ? { token, renew, takeover } : { token, renew }) : { method: 'POST' });
/** Give the lease back (only if this page, `token`, holds it); `keepalive` lets it finish
 * while the page unloads. */
export const releaseLease = (imageId: number, keepalive = false, token?: string): Promise<null> =>
  json(`images/${imageId}/lease${token ? `?token=${encodeURIComponent(token)}` : ''}`, { method: 'DELETE', keepalive });
/** The annotator's "Done": the image waits for review. */
export const markDone = (imageId: number): Promise<ImageInfo> => json(`images/${imageId}/done`, { method: 'POST' });

/** The decoder ONNX URL of a model (what the worker fetches itself). */
export const decoderUrl = (model: ModelInfo): string => url(model.decoder_url);

/** The image's bytes as displayed (EXIF applied). */
export const imageFileUrl = (image: ImageInfo): string => (image.file_url ? url(image.file_url) : url(`images/${image.id}/file`));

export interface EmbeddingPayload {
  fp16: ArrayBuffer;
  modelId: string;
}

/**
 * An embedding made by another model than the decoder the page holds: decoding it would
 * give a wrong mask without any sign, so it is never fed to the decoder.
 */
export class ModelMismatchError extends Error {
  constructor(
    readonly expected: string,
    readonly got: string | null,
  ) {
    super(
      got
        ? `This image's embedding is from model ${got}, but the decoder loaded here is ${expected}: reload the page.`
        : `The server did not say which model made this embedding (expected ${expected}): not decoding it.`,
    );
    this.name = 'ModelMismatchError';
  }
}

/** Throws ModelMismatchError unless the embedding's model (X-Model-Id) is the decoder's. */
export function checkEmbeddingModel(expected: string, got: string | null): string {
  if (got === null || got !== expected) throw new ModelMismatchError(expected, got);
  return got;
}

/** The 409 the server answers when the project switched to another model since the page
 * loaded its decoder (`code: "model_changed"`, `model_id`: the project's model now). */
export function modelChangedTo(e: unknown): string | null {
  if (!(e instanceof ApiError) || e.status !== 409) return null;
  const body = e.body as { code?: unknown; model_id?: unknown } | null;
  return body && body.code === 'model_changed' && typeof body.model_id === 'string' ? body.model_id : null;
}

/**
 * The image's fp16 1x256x64x64 embedding made by `modelId`, the model of the decoder the
 * page holds; anything else is an error (ModelMismatchError, or a 409 `model_changed`).
 * The browser's HTTP cache handles the ETag (strong, immutable). A 409 (not ready yet)
 * surfaces as ApiError with status 409 and `body.embedding_status`.
 */
export async function getEmbedding(image: ImageInfo, modelId: string): Promise<EmbeddingPayload> {
  const base = image.embedding_url || `images/${image.id}/embedding`;
  const resp = await request(`${base}?model_id=${encodeURIComponent(modelId)}`, {
    // JSON too: DRF negotiates its (JSON) error bodies against this header and answers 406
    // to an octet-stream-only Accept.
    headers: { Accept: 'application/octet-stream, application/json;q=0.9' },
  });
  const dtype = resp.headers.get('X-Embedding-Dtype');
  if (dtype && dtype !== 'float16') throw new ApiError(resp.status, `embedding dtype ${dtype}, expected float16`, null, {}, null);
  const got = checkEmbeddingModel(modelId, resp.headers.get('X-Model-Id'));
  return { fp16: await resp.arrayBuffer(), modelId: got };
}

/** One prompt for `POST /api/images/<id>/decode` (server-side decoding, docs/api.md "Images"). */
export interface DecodePromptBody {
  /** (x, y) in pixels of the displayed image, box corners included. */
  point_coords: [number, number][];
  /** 1 fg, 0 bg, 2 box top-left, 3 box bottom-right (no padding point: the server adds it). */
  point_labels: number[];
  /** base64 of little-endian fp16 256x256 logits (the chosen candidate's), or null. */
  mask_input: string | null;
  model_id: string;
  quantized?: boolean;
}

export interface DecodePromptResponse {
  /** 4 COCO compressed RLEs; 0 = single-mask token, 1..3 = the multimask candidates. */
  masks: CocoRle[];
  iou_predictions: number[];
  /** base64 of little-endian fp16 4x256x256 logits. */
  low_res_masks: string;
  timing_ms: { embedding_load: number; run: number; encode: number };
}

/** Decode one prompt on the server (onnxruntime in Django) with the image's stored embedding. */
export const decodePrompt = (imageId: number, body: DecodePromptBody): Promise<DecodePromptResponse> =>
  json(`images/${imageId}/decode`, jsonBody('POST', body));

/**
 * A multipart POST through XMLHttpRequest, because fetch reports no upload progress.
 * Resolves with the JSON body of a 2xx; rejects with ApiError: the server's refusal (its
 * body unpacked), or status 0 when no answer came.
 *
 * @param onProgress fraction of the request body sent, 0..1.
 */
function postForm<T>(path: string, form: FormData, onProgress: (fraction: number) => void, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', url(path));
    xhr.withCredentials = true;
    xhr.setRequestHeader('Accept', 'application/json');
    const token = csrfToken();
    if (token) xhr.setRequestHeader('X-CSRFToken', token);
    xhr.upload.onprogress = (ev) => {
      if (ev.lengthComputable && ev.total > 0) onProgress(ev.loaded / ev.total);
    };
    xhr.onload = () => {
      let body: unknown = null;
      try {
        body = xhr.responseText ? JSON.parse(xhr.responseText) : null;
      } catch {
        body = xhr.responseText;
      }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body as T);
      else reject(ApiError.fromBody(xhr.status, xhr.statusText, body));
    };
    xhr.onerror = () => reject(new ApiError(0, `network error: the ${what} did not reach the server`, null, {}, null));
    xhr.onabort = () => reject(new ApiError(0, `the ${what} was aborted`, null, {}, null));
    xhr.send(form);
  });
}

/**
 * `POST /api/projects/<id>/images/` with one file (field `files`). Resolves with the images
 * stored (several for a zip); rejects with ApiError: the server's refusal (400
 * `{"<file name>": [reasons]}`, 413, 403), or status 0 when no answer came.
 *
 * @param onProgress fraction of the request body sent, 0..1.
 */
export function uploadImageFile(projectId: number, file: File, onProgress: (fraction: number) => void = () => {}): Promise<ImageInfo[]> {
  const form = new FormData();
  form.append('files', file, file.name);
  return postForm(`projects/${projectId}/images/`, form, onProgress, 'upload');
}

/** Export jobs (docs/api.md "Export"): the project's, newest first; start one (201); one job. */
export const listExports = (projectId: number): Promise<ExportJob[]> => json(`projects/${projectId}/exports/`);
export const startExport = (projectId: number, body: ExportStartBody): Promise<ExportJob> =>
  json(`projects/${projectId}/exports/`, jsonBody('POST', body));
export const getExport = (exportId: number): Promise<ExportJob> => json(`exports/${exportId}/`);

/**
 * `POST /api/projects/<id>/imports/coco` (multipart `file`, `mode`): the import runs in the
 * request; resolves with its report. 400 `{"file": [...]}` for a file that is not a COCO
 * instances object, 403 for roles that may not import, 413 over the request limit.
 */
export function importCoco(projectId: number, file: File, mode: ImportMode,
                           onProgress: (fraction: number) => void = () => {}): Promise<ImportReport> {
  const form = new FormData();
  form.append('file', file, file.name);
  form.append('mode', mode);
  return postForm(`projects/${projectId}/imports/coco`, form, onProgress, 'import');
}
