/**
 * What the managers' dashboard charts show, as plain data built from the stats API's
 * payload (`GET /api/projects/<id>/stats?group_by=...`, embedded in the page): one spec per
 * chart, drawn by dashboard.ts with Chart.js. Pure, so the numbers are unit-tested.
 */

export type GroupBy = 'user' | 'day' | 'model';

export interface StatsRow {
  key: string;
  masks: number;
  images: number;
  masks_per_image: number | null;
  seconds_per_mask_median: number | null;
  seconds_per_mask_p90: number | null;
  active_seconds: number;
  masks_per_hour: number | null;
  clicks: number;
  clicks_per_mask: number | null;
  edits: number;
  prefill_accepted: number;
  prefill_edited: number;
  prefill_rejected: number;
  prefill_acceptance_rate: number | null;
  reviewed: number;
  review_rejected: number;
  review_rejection_rate: number | null;
}

export interface Stats {
  group_by: GroupBy;
  columns: string[];
  rows: StatsRow[];
  total: Omit<StatsRow, 'key'>;
}

export type StatsByGroup = Record<GroupBy, Stats>;

type Metric = Exclude<keyof StatsRow, 'key'>;

export interface SeriesSpec {
  label: string;
  metric: Metric;
  /** Chart.js dataset type: bars, or a line over them (drawn against the right axis). */
  type: 'bar' | 'line';
  color: string;
  /** null where the value is undefined (no data): Chart.js leaves a gap. */
  data: (number | null)[];
}

export interface ChartSpec {
  id: string;
  title: string;
  groupBy: GroupBy;
  labels: string[];
  series: SeriesSpec[];
  /** Axis titles: left (bars), right (a line series, if any). */
  yTitle: string;
  y2Title?: string;
  /** Rates are 0..1. */
  yMax?: number;
}

const COLORS = { blue: '#4363d8', orange: '#f58231', green: '#3cb44b', red: '#e6194b', purple: '#911eb4' };

function series(rows: StatsRow[], label: string, metric: Metric, color: string, type: 'bar' | 'line' = 'bar'): SeriesSpec {
  return { label, metric, type, color, data: rows.map((r) => r[metric] as number | null) };
}

/** The four dashboard charts: seconds per mask and review/pre-fill rates per annotator,
 * masks and seconds per mask per day, seconds and clicks per mask per model version. */
export function chartSpecs(stats: StatsByGroup): ChartSpec[] {
  const u = stats.user.rows;
  const d = stats.day.rows;
  const m = stats.model.rows;
  return [
    {
      id: 'chart-seconds-user', title: 'Seconds per mask, per annotator', groupBy: 'user', labels: u.map((r) => r.key),
      yTitle: 'seconds',
      series: [series(u, 'median', 'seconds_per_mask_median', COLORS.blue), series(u, 'p90', 'seconds_per_mask_p90', COLORS.orange)],
    },
    {
      id: 'chart-day', title: 'Masks and seconds per mask, per day', groupBy: 'day', labels: d.map((r) => r.key),
      yTitle: 'masks', y2Title: 'seconds per mask (median)',
      series: [series(d, 'masks', 'masks', COLORS.green), series(d, 's / mask (median)', 'seconds_per_mask_median', COLORS.blue, 'line')],
    },
    {
      id: 'chart-model', title: 'Per model version', groupBy: 'model', labels: m.map((r) => r.key),
      yTitle: 'seconds / clicks per mask',
      series: [
        series(m, 's / mask (median)', 'seconds_per_mask_median', COLORS.blue),
        series(m, 'clicks / mask', 'clicks_per_mask', COLORS.purple),
        series(m, 'masks / image', 'masks_per_image', COLORS.green),
      ],
    },
    {
      id: 'chart-rates-user', title: 'Pre-fill acceptance and review rejection, per annotator', groupBy: 'user',
      labels: u.map((r) => r.key), yTitle: 'rate', yMax: 1,
      series: [
        series(u, 'pre-fill acceptance', 'prefill_acceptance_rate', COLORS.green),
        series(u, 'review rejection', 'review_rejection_rate', COLORS.red),
      ],
    },
  ];
}
