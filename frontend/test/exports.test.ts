import { describe, expect, it } from 'vitest';
import {
  activeJobs,
  exportRow,
  formatSpan,
  formatText,
  formatUtc,
  importSummary,
  statsText,
  type ExportJob,
  type ImportReport,
} from '../src/lib/exports';

function job(over: Partial<ExportJob>): ExportJob {
  return {
    id: 12, project: 3, format: 'coco', options: { only_approved: false, include_images: false }, status: 'done',
    progress: 1, stats: { images: 3, annotations: 5, images_included: 0, images_reencoded_upright: 0 }, error: '',
    created_by: 'alice', created_at: '2026-03-01T09:05:07.123456Z', started_at: '2026-03-01T09:05:08Z',
    finished_at: '2026-03-01T09:05:09Z', expires_at: '2026-03-08T09:05:09Z', size: 2048,
    download_url: '/api/exports/12/download', ...over,
  };
}

const NOW = Date.parse('2026-03-01T09:10:00Z');

describe('times', () => {
  it('writes UTC with the zone named, whatever the offset of the input', () => {
    expect(formatUtc('2026-03-01T09:05:07.123456Z')).toBe('2026-03-01 09:05:07 UTC');
    expect(formatUtc('2026-03-01T10:05:07+01:00')).toBe('2026-03-01 09:05:07 UTC');
    expect(formatUtc('2026-12-31T23:59:00-02:00', false)).toBe('2027-01-01 01:59 UTC');
    expect(formatUtc(null)).toBe('');
    expect(formatUtc('not a time')).toBe('');
  });

  it('says a span in its two largest units', () => {
    expect(formatSpan(6 * 86400_000 + 23 * 3600_000 + 55 * 60_000)).toBe('6 d 23 h');
    expect(formatSpan(2 * 3600_000 + 5 * 60_000)).toBe('2 h 5 min');
    expect(formatSpan(3 * 86400_000)).toBe('3 d');
    expect(formatSpan(40_000)).toBe('40 s');
    expect(formatSpan(-5)).toBe('0 s');
  });
});

describe('export rows', () => {
  it('a done job: size, times in UTC, expiry with the time left, stats, a download link', () => {
    const row = exportRow(job({}), NOW, 168);
    expect(row.statusText).toBe('done');
    expect(row.size).toBe('2.0 KB');
    expect(row.created).toBe('2026-03-01 09:05:07 UTC');
    expect(row.by).toBe('alice');
    expect(row.expires).toBe('2026-03-08 09:05 UTC (in 6 d 23 h)');
    expect(row.detail).toBe('3 images, 5 masks');
    expect(row.detailIsError).toBe(false);
    expect(row.downloadUrl).toBe('/api/exports/12/download');
    expect(row.bar).toBeNull();
  });

  it('a queued job is "queued" (the API says pending), a running one shows its progress', () => {
    const queued = exportRow(job({ status: 'pending', progress: 0, expires_at: null, size: null, download_url: null }), NOW);
    expect([queued.statusText, queued.bar, queued.progressText, queued.downloadUrl]).toEqual(['queued', 0, 'waiting for a worker', null]);
    const running = exportRow(job({ status: 'running', progress: 0.427, expires_at: null, size: null, download_url: null }), NOW);
    expect([running.statusText, running.bar, running.progressText]).toEqual(['running', 0.427, '42%']);
    expect(running.size).toBe('');
  });

  it('a failed job shows the server\'s reason as an error and no link', () => {
    const row = exportRow(job({ status: 'failed', progress: 0.5, error: 'OSError: [Errno 28] No space left on device',
      expires_at: null, download_url: null, size: null }), NOW);
    expect(row.statusText).toBe('failed');
    expect(row.detail).toBe('OSError: [Errno 28] No space left on device');
    expect(row.detailIsError).toBe(true);
    expect(row.downloadUrl).toBeNull();
    expect(exportRow(job({ status: 'failed', error: '' }), NOW).detail).toBe('The worker gave no reason.');
  });

  it('an expired job says its file is gone, has no link even if a stale url came along', () => {
    const row = exportRow(job({ status: 'expired', expires_at: null, size: null }), NOW, 168);
    expect(row.statusText).toBe('expired');
    expect(row.expires).toBe('file deleted');
    expect(row.detail).toContain('168 h after it was written');
    expect(row.detail).toContain('start a new export');
    expect(row.downloadUrl).toBeNull();
    expect(row.size).toBe('');
  });

  it('says when a file is due for deletion', () => {
    expect(exportRow(job({ expires_at: '2026-03-01T09:00:00Z' }), NOW).expires).toBe('2026-03-01 09:00 UTC (due now)');
  });

  it('polls only queued and running jobs', () => {
    const list = [job({ id: 1, status: 'pending' }), job({ id: 2, status: 'running' }), job({ id: 3 }),
      job({ id: 4, status: 'failed' }), job({ id: 5, status: 'expired' })];
    expect(activeJobs(list).map((j) => j.id)).toEqual([1, 2]);
  });

  it('names the format and options', () => {
    expect(formatText(job({}))).toBe('COCO (RLE)');
    expect(formatText(job({ format: 'sa1b', options: { only_approved: true, include_images: true } })))
      .toBe('SA-1B, only approved masks, with images');
    expect(formatText(job({ format: 'future_format', options: {} }))).toBe('future_format');
  });

  it('summarises polygon and PNG stats', () => {
    expect(statsText({ images: 1, annotations: 1, polygon_min_iou: 1, polygon_inexact: 0 }))
      .toBe('1 image, 1 mask, polygons: min IoU 1.0000, 0 inexact');
    expect(statsText({ images: 2, annotations: 4, images_included: 2, png_overlap_pixels: 30 }))
      .toBe('2 images, 4 masks, 2 image files included, 30 overlapping pixels (one instance per PNG pixel)');
    expect(statsText({})).toBe('');
  });
});

describe('import report', () => {
  const report: ImportReport = {
    imported: 3,
    skipped: [
      { index: 4, id: 77, reason: 'the mask is empty' },
      { index: 5, id: null, reason: "image_id 9 is not in the file's images" },
    ],
    unmatched_images: [{ id: 9, file_name: 'gone.jpg', reason: 'no image of this project has that file_name' }],
    categories_created: ['bird'],
    area_bbox_corrected: 1,
  };

  it('gives counts, then categories, corrections, unmatched images and skipped annotations with reasons', () => {
    const s = importSummary(report, 'annotations');
    expect(s.headline).toBe('Imported 3 annotations, skipped 2, 1 image not matched.');
    expect(s.lines).toEqual([
      'Categories created: bird',
      '1 area/bbox value recomputed from the mask',
      'Image 9 (gone.jpg): no image of this project has that file_name',
      'Annotation #4 (id 77): the mask is empty',
      "Annotation #5: image_id 9 is not in the file's images",
    ]);
    expect(s.more).toBe(0);
  });

  it('names proposals, and cuts long lists', () => {
    const many: ImportReport = { ...report, imported: 1, unmatched_images: [], categories_created: [], area_bbox_corrected: 0,
      skipped: Array.from({ length: 30 }, (_, i) => ({ index: i, id: i, reason: 'x' })) };
    const s = importSummary(many, 'proposals', 20);
    expect(s.headline).toBe('Imported 1 proposal, skipped 30.');
    expect(s.lines).toHaveLength(20);
    expect(s.more).toBe(10);
  });
});
