import { describe, expect, it } from 'vitest';
import { activeJob, beforeAfter, retrainRow, type RetrainJob } from '../src/lib/retrain';

const base = { id: 1, model_id: 'default-aaaaaaaaaaaa', name: 'Shipped default model' };

function job(over: Partial<RetrainJob>): RetrainJob {
  return {
    id: 7, status: 'done', phase: 'done', progress: 1, decision: 'promoted', error: '', base_version: base,
    new_version: null, created_by: 'manager', created_at: '2026-11-30T10:15:42Z', finished_at: null,
    metrics: {
      before: { n: 4, 'NoC@85': 12.5, 'NoC@90': 17, 'NoF@90': 3 },
      after: { n: 4, 'NoC@85': 9.25, 'NoC@90': 16, 'NoF@90': 3 },
      reason: 'held-out NoC@85 12.50 -> 9.25 (lower is better)', train_masks: 20, heldout_masks: 4,
    },
    ...over,
  };
}

describe('retrain panel rows', () => {
  it('shows before -> after and the decision of a finished job', () => {
    const row = retrainRow(job({}));
    expect(row.noc85).toBe('12.50 → 9.25');
    expect(row.noc90).toBe('17.00 → 16.00');
    expect(row.decision).toBe('promoted');
    expect(row.masks).toBe('20 / 4');
    expect(row.started).toBe('2026-11-30 10:15');
  });

  it('says a candidate that is not better was not kept', () => {
    expect(retrainRow(job({ decision: 'rejected' })).decision).toBe('not better: kept the current version');
  });

  it('shows phase and percent while running, the error when failed', () => {
    const running = retrainRow(job({ status: 'running', decision: null, phase: 'fine-tuning: step 3/20', progress: 0.31, metrics: {} }));
    expect(running.decision).toBe('running');
    expect(running.detail).toBe('fine-tuning: step 3/20 (31%)');
    expect(running.noc85).toBe('–');
    const failed = retrainRow(job({ status: 'failed', decision: null, error: 'Too few accepted masks', metrics: {} }));
    expect([failed.decision, failed.detail]).toEqual(['failed', 'Too few accepted masks']);
  });

  it('finds the job still to finish', () => {
    expect(activeJob([job({ id: 9, status: 'pending' }), job({ id: 8 })])?.id).toBe(9);
    expect(activeJob([job({})])).toBeNull();
    expect(beforeAfter(undefined, undefined)).toBe('–');
  });
});
