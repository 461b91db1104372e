/**
 * The dashboard's "Model" panel as plain data: which retrain job is still running and what
 * each job's row says (held-out NoC@85 / NoC@90 before -> after, the decision). Pure, so the
 * wording is unit-tested; dashboard.ts draws it and polls the API.
 */

export type RetrainStatus = 'pending' | 'running' | 'done' | 'failed';

export interface HeldoutSummary {
  n: number;
  'NoC@85': number;
  'NoC@90': number;
  'NoF@90': number;
  'mIoU@1'?: number;
}

export interface RetrainVersion {
  id: number;
  model_id: string;
  name: string;
}

export interface RetrainJob {
  id: number;
  status: RetrainStatus;
  phase: string;
  progress: number;
  decision: 'promoted' | 'rejected' | null;
  metrics: {
    before?: HeldoutSummary;
    after?: HeldoutSummary;
    reason?: string;
    train_masks?: number;
    heldout_masks?: number;
    steps?: number;
    seconds?: number;
  };
  error: string;
  base_version: RetrainVersion;
  new_version: RetrainVersion | null;
  created_by: string | null;
  created_at: string;
  finished_at: string | null;
}

export interface RetrainRow {
  id: number;
  status: RetrainStatus;
  started: string;
  by: string;
  masks: string;
  noc85: string;
  noc90: string;
  decision: string;
  detail: string;
}

/** The job a worker still has to finish (the list is latest first), or null. */
export function activeJob(jobs: RetrainJob[]): RetrainJob | null {
  return jobs.find((j) => j.status === 'pending' || j.status === 'running') ?? null;
}

const fmt = (x: number | undefined): string => (x === undefined || x === null ? '–' : x.toFixed(2));

/** "before → after", or "–" when the job never measured it. */
export function beforeAfter(before: number | undefined, after: number | undefined): string {
  if (before === undefined && after === undefined) return '–';
  return `${fmt(before)} → ${fmt(after)}`;
}

/** One table row per job. */
export function retrainRow(job: RetrainJob): RetrainRow {
  const m = job.metrics ?? {};
  let decision: string;
  let detail: string;
  if (job.status === 'failed') {
    decision = 'failed';
    detail = job.error;
  } else if (job.status !== 'done') {
    decision = job.status;
    detail = `${job.phase} (${Math.round(job.progress * 100)}%)`;
  } else {
    decision = job.decision === 'promoted' ? 'promoted' : 'not better: kept the current version';
    detail = m.reason ?? '';
  }
  return {
    id: job.id,
    status: job.status,
    started: job.created_at.slice(0, 16).replace('T', ' '),
    by: job.created_by ?? '',
    masks: m.train_masks === undefined ? '–' : `${m.train_masks} / ${m.heldout_masks ?? 0}`,
    noc85: beforeAfter(m.before?.['NoC@85'], m.after?.['NoC@85']),
    noc90: beforeAfter(m.before?.['NoC@90'], m.after?.['NoC@90']),
    decision,
    detail,
  };
}
