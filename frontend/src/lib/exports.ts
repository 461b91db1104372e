/**
 * The exports page's logic as plain data, unit-tested: what each export job's row says
 * (status in words, progress, size, times in UTC with the zone named, expiry, the server's
 * reason for a failure, whether it can be downloaded), which jobs still need polling, and
 * a COCO import's report in lines. exports.ts draws it and talks to the API
 * (docs/api.md "Export", "Import").
 */
import { formatBytes } from './uploads';

export type ExportFormat = 'coco' | 'coco_polygons' | 'sa1b' | 'png';
export type ExportStatus = 'pending' | 'running' | 'done' | 'failed' | 'expired';

/** `GET /api/exports/<id>/` (ExportOutput). */
export interface ExportJob {
  id: number;
  project: number;
  format: ExportFormat | string;
  options: { only_approved?: boolean; include_images?: boolean };
  status: ExportStatus;
  /** 0..1: masks written / masks to write. */
  progress: number;
  stats: Record<string, unknown>;
  /** Why it failed (the worker's words); '' otherwise. */
  error: string;
  created_by: string | null;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  /** When a done export's file is deleted; null unless done. */
  expires_at: string | null;
  /** Bytes of a done export's file; null otherwise (absent from older servers). */
  size?: number | null;
  /** Set only while done. */
  download_url: string | null;
}

export interface ExportStartBody {
  format: string;
  only_approved: boolean;
  include_images: boolean;
}

/** `POST /api/projects/<id>/imports/coco` → 200 (ImportReportOutput). */
export interface ImportReport {
  imported: number;
  skipped: { index: number; id: unknown; reason: string }[];
  unmatched_images: { id: unknown; file_name: string | null; reason: string }[];
  categories_created: string[];
  area_bbox_corrected: number;
}

export type ImportMode = 'annotations' | 'proposals';

/** The status as the page says it: the API's `pending` is a job waiting in the queue. */
export const STATUS_LABEL: Record<ExportStatus, string> = {
  pending: 'queued', running: 'running', done: 'done', failed: 'failed', expired: 'expired',
};

export const FORMAT_LABEL: Record<string, string> = {
  coco: 'COCO (RLE)', coco_polygons: 'COCO (polygons)', sa1b: 'SA-1B', png: 'PNG masks',
};

/** Whether the page should keep polling this job (a worker has not finished it yet). */
export function isActive(job: Pick<ExportJob, 'status'>): boolean {
  return job.status === 'pending' || job.status === 'running';
}

/** The jobs still queued or running. */
export function activeJobs(jobs: ExportJob[]): ExportJob[] {
  return jobs.filter(isActive);
}

const pad = (n: number): string => String(n).padStart(2, '0');

/**
 * An ISO time as "YYYY-MM-DD HH:MM:SS UTC" (the zone named, whatever the browser's), or
 * '' for null / unparsable input. `seconds: false` drops the seconds.
 */
export function formatUtc(iso: string | null | undefined, seconds = true): string {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const date = `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
  const time = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}${seconds ? `:${pad(d.getUTCSeconds())}` : ''}`;
  return `${date} ${time} UTC`;
}

/** A span of time in the largest two units: "6 d 23 h", "2 h 5 min", "40 s". */
export function formatSpan(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d) return h ? `${d} d ${h} h` : `${d} d`;
  if (h) return m ? `${h} h ${m} min` : `${h} h`;
  if (m) return `${m} min`;
  return `${s} s`;
}

/** The format and its options in words: "COCO (RLE), only approved masks, with images". */
export function formatText(job: Pick<ExportJob, 'format' | 'options'>): string {
  const parts = [FORMAT_LABEL[job.format] ?? job.format];
  if (job.options?.only_approved) parts.push('only approved masks');
  if (job.options?.include_images) parts.push('with images');
  return parts.join(', ');
}

/** What a finished job wrote, from its `stats`: "3 images, 12 masks" (+ polygon / PNG notes). */
export function statsText(stats: Record<string, unknown> | null | undefined): string {
  if (!stats) return '';
  const num = (k: string): number | null => (typeof stats[k] === 'number' ? (stats[k] as number) : null);
  const parts: string[] = [];
  const images = num('images');
  const masks = num('annotations');
  if (images !== null) parts.push(`${images} image${images === 1 ? '' : 's'}`);
  if (masks !== null) parts.push(`${masks} mask${masks === 1 ? '' : 's'}`);
  const included = num('images_included');
  if (included) parts.push(`${included} image file${included === 1 ? '' : 's'} included`);
  const minIou = num('polygon_min_iou');
  if (minIou !== null) parts.push(`polygons: min IoU ${minIou.toFixed(4)}, ${num('polygon_inexact') ?? 0} inexact`);
  const overlap = num('png_overlap_pixels');
  if (overlap) parts.push(`${overlap} overlapping pixels (one instance per PNG pixel)`);
  return parts.join(', ');
}

export interface ExportRow {
  id: number;
  status: ExportStatus;
  statusText: string;
  format: string;
  /** 0..1 for a bar while queued or running; null otherwise. */
  bar: number | null;
  progressText: string;
  size: string;
  created: string;
  by: string;
  expires: string;
  /** Under the status: the server's reason (failed), what was written (done), what to do (expired). */
  detail: string;
  /** The detail is an error (shown as one). */
  detailIsError: boolean;
  downloadUrl: string | null;
}

/**
 * One table row per job.
 *
 * @param now the clock (ms since the epoch) to say how long until a done file is deleted.
 * @param retentionHours ANNOTATOR_EXPORT_RETENTION_HOURS, to explain an expired job.
 */
export function exportRow(job: ExportJob, now: number, retentionHours: number | null = null): ExportRow {
  const pct = `${Math.floor(Math.max(0, Math.min(1, job.progress || 0)) * 100)}%`;
  let bar: number | null = null;
  let progressText = '';
  let expires = '';
  let detail = '';
  let detailIsError = false;
  switch (job.status) {
    case 'pending':
      bar = 0;
      progressText = 'waiting for a worker';
      break;
    case 'running':
      bar = Math.max(0, Math.min(1, job.progress || 0));
      progressText = pct;
      break;
    case 'done': {
      progressText = '100%';
      detail = statsText(job.stats);
      if (job.expires_at) {
        const left = new Date(job.expires_at).getTime() - now;
        expires = `${formatUtc(job.expires_at, false)} (${left > 0 ? `in ${formatSpan(left)}` : 'due now'})`;
      }
      break;
    }
    case 'failed':
      progressText = pct;
      detail = job.error || 'The worker gave no reason.';
      detailIsError = true;
      break;
    case 'expired':
      expires = 'file deleted';
      detail = `The file was deleted${retentionHours ? ` ${retentionHours} h after it was written` : ''}; start a new export to get the data.`;
      break;
  }
  return {
    id: job.id,
    status: job.status,
    statusText: STATUS_LABEL[job.status] ?? job.status,
    format: formatText(job),
    bar,
    progressText,
    size: job.status === 'done' && typeof job.size === 'number' ? formatBytes(job.size) : '',
    created: formatUtc(job.created_at),
    by: job.created_by ?? '',
    expires,
    detail,
    detailIsError,
    downloadUrl: job.status === 'done' ? job.download_url : null,
  };
}

/** A COCO import's report as a headline and detail lines (skipped reasons first few). */
export function importSummary(report: ImportReport, mode: ImportMode, maxLines = 20): { headline: string; lines: string[]; more: number } {
  const what = mode === 'proposals' ? 'proposal' : 'annotation';
  const n = report.imported;
  const parts = [`Imported ${n} ${what}${n === 1 ? '' : 's'}`, `skipped ${report.skipped.length}`];
  if (report.unmatched_images.length) {
    parts.push(`${report.unmatched_images.length} image${report.unmatched_images.length === 1 ? '' : 's'} not matched`);
  }
  const lines: string[] = [];
  if (report.categories_created.length) lines.push(`Categories created: ${report.categories_created.join(', ')}`);
  if (report.area_bbox_corrected) {
    lines.push(`${report.area_bbox_corrected} area/bbox value${report.area_bbox_corrected === 1 ? '' : 's'} recomputed from the mask`);
  }
  const detail = [
    ...report.unmatched_images.map((u) => `Image ${JSON.stringify(u.id)}${u.file_name ? ` (${u.file_name})` : ''}: ${u.reason}`),
    ...report.skipped.map((s) => `Annotation #${s.index}${s.id !== null && s.id !== undefined ? ` (id ${JSON.stringify(s.id)})` : ''}: ${s.reason}`),
  ];
  lines.push(...detail.slice(0, maxLines));
  return { headline: `${parts.join(', ')}.`, lines, more: Math.max(0, detail.length - maxLines) };
}
