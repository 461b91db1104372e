import { describe, expect, it } from 'vitest';
import { chartSpecs, type Stats, type StatsByGroup, type StatsRow } from '../src/lib/dashboardCharts';

function row(key: string, patch: Partial<StatsRow>): StatsRow {
  return {
    key, masks: 0, images: 0, masks_per_image: null, seconds_per_mask_median: null, seconds_per_mask_p90: null,
    active_seconds: 0, masks_per_hour: null, clicks: 0, clicks_per_mask: null, edits: 0, prefill_accepted: 0,
    prefill_edited: 0, prefill_rejected: 0, prefill_acceptance_rate: null, reviewed: 0, review_rejected: 0,
    review_rejection_rate: null, ...patch,
  };
}

function stats(groupBy: Stats['group_by'], rows: StatsRow[]): Stats {
  const { key: _key, ...total } = row('', {});
  return { group_by: groupBy, columns: [], rows, total };
}

describe('dashboard chart specs', () => {
  const data: StatsByGroup = {
    user: stats('user', [row('alice', { seconds_per_mask_median: 25, seconds_per_mask_p90: 37, review_rejection_rate: 0.3333 }),
      row('bob', { seconds_per_mask_median: 7, seconds_per_mask_p90: 10.8, prefill_acceptance_rate: 0.6667, review_rejection_rate: 0 })]),
    day: stats('day', [row('2026-01-10', { masks: 1, seconds_per_mask_median: 40 }), row('2026-01-11', { masks: 7, seconds_per_mask_median: 10 })]),
    model: stats('model', [row('m1', { seconds_per_mask_median: 20, clicks_per_mask: 2, masks_per_image: 3 })]),
  };

  it('takes each series straight from the stats rows, null where undefined', () => {
    const [seconds, day, model, rates] = chartSpecs(data);
    expect(seconds!.labels).toEqual(['alice', 'bob']);
    expect(seconds!.series.map((s) => s.data)).toEqual([[25, 7], [37, 10.8]]);
    expect(day!.labels).toEqual(['2026-01-10', '2026-01-11']);
    expect(day!.series.map((s) => [s.type, s.data])).toEqual([['bar', [1, 7]], ['line', [40, 10]]]);
    expect(model!.series.map((s) => s.data)).toEqual([[20], [2], [3]]);
    expect(rates!.yMax).toBe(1);
    expect(rates!.series.map((s) => s.data)).toEqual([[null, 0.6667], [0.3333, 0]]);
  });

  it('gives every chart a distinct canvas id', () => {
    const ids = chartSpecs(data).map((c) => c.id);
    expect(new Set(ids).size).toBe(ids.length);
  });
});
