import { describe, expect, it } from 'vitest';
import {
  deleteRefusal,
  duplicateLabelRows,
  embeddingProgress,
  generalChanged,
  generalErrors,
  generalRequest,
  isLastAdmin,
  maskUsage,
  memberEditable,
  paramsRequest,
  paramText,
  prefillErrors,
  prefillProgress,
  roleChoices,
  versionOptions,
  type LabelRow,
  type MemberInfo,
} from '../src/lib/projectSettings';

const stored = (id: number, name: string, color: string): LabelRow => ({ id, saved: { name, color }, name, color });
const fresh = (name: string, color: string): LabelRow => ({ id: null, saved: null, name, color });

describe('the General section\'s request', () => {
  it('sends only what changed of stored labels, by id, and new rows with a name', () => {
    const rows: LabelRow[] = [
      stored(3, 'car', '#e6194b'), // unchanged
      { ...stored(4, 'person', '#3cb44b'), name: ' pedestrian ' }, // renamed
      { ...stored(5, 'bike', '#4363d8'), color: '#4363D8' }, // same colour, other case: unchanged
      { ...stored(6, 'tree', '#f58231'), color: '#000000' }, // recoloured
      fresh('   ', '#911eb4'), // blank new row: not sent
      fresh(' sign ', '#42d4f4'),
    ];
    const { body, rows: sent } = generalRequest(' Street ', rows);
    expect(body).toEqual({
      name: ' Street ',
      categories: [{ id: 4, name: 'pedestrian' }, { id: 6, color: '#000000' }, { name: 'sign', color: '#42d4f4' }],
    });
    expect(sent).toEqual([1, 3, 5]);
  });

  it('a stored label emptied is sent, for the server to refuse by its row', () => {
    const { body, rows } = generalRequest('P', [stored(3, 'car', '#e6194b'), { ...stored(4, 'person', '#3cb44b'), name: '  ' }]);
    expect(body.categories).toEqual([{ id: 4, name: '' }]);
    expect(rows).toEqual([1]);
  });

  it('knows whether anything changed', () => {
    expect(generalChanged('P ', 'P', [stored(1, 'a', '#000000'), fresh('', '#111111')])).toBe(false);
    expect(generalChanged('Q', 'P', [])).toBe(true);
    expect(generalChanged('P', 'P', [fresh('b', '#111111')])).toBe(true);
  });

  it('repeated names over stored and new rows are asked about first', () => {
    const rows = [stored(1, 'car', '#000000'), { ...stored(2, 'person', '#000000'), name: 'car' }, fresh('car ', '#000000')];
    const out = duplicateLabelRows(rows);
    expect([...out.keys()]).toEqual([1, 2]);
    expect(out.get(2)?.[0]).toContain('"car" is already label 1');
  });

  it('the server\'s errors land on the rows that were sent', () => {
    const e = generalErrors({ name: ['This field may not be blank.'], categories: { '1': { name: ['There is already a label "car".'] } } },
      [1, 3], 'HTTP 400');
    expect(e.name).toEqual(['This field may not be blank.']);
    expect([...e.categoryRows]).toEqual([[3, ['There is already a label "car".']]]);
  });

  it('a refused delete says why', () => {
    expect(deleteRefusal(409, { detail: 'The label "car" is used by 2 masks…', code: 'category_in_use' }, 'x')).toBe('The label "car" is used by 2 masks…');
    expect(deleteRefusal(404, null, 'HTTP 404')).toContain('no longer exists');
    expect(deleteRefusal(500, '<html>', 'HTTP 500 Internal Server Error')).toBe('HTTP 500 Internal Server Error');
    expect([maskUsage(0), maskUsage(1), maskUsage(7)]).toEqual(['unused', '1 mask', '7 masks']);
  });
});

describe('pre-fill parameters', () => {
  it('sends every input as a number and leaves range checks to the server', () => {
    const r = paramsRequest([
      { name: 'pred_iou_thresh', kind: 'float', raw: '0.5' },
      { name: 'stability_score_thresh', kind: 'float', raw: ' 5 ' },
      { name: 'points_per_side', kind: 'int', raw: '32.5' },
      { name: 'box_nms_thresh', kind: 'float', raw: '' },
    ]);
    expect(r.params).toEqual({ pred_iou_thresh: 0.5, stability_score_thresh: 5, points_per_side: 32.5 });
    expect([...r.errors]).toEqual([['box_nms_thresh', ['Enter a number.']]]);
  });

  it('shows stored values exactly (a rounded one sent back would become an override)', () => {
    expect(paramText(512 / 1500)).toBe(String(512 / 1500));
    expect(paramText(32)).toBe('32');
    expect(paramText(undefined)).toBe('');
  });

  it('sorts the server\'s errors by parameter', () => {
    const e = prefillErrors({
      params: { stability_score_thresh: ['stability_score_thresh must be in [0, 1], got 5'], non_field_errors: ['no points'] },
    }, 'HTTP 400');
    expect([...e.params]).toEqual([['stability_score_thresh', ['stability_score_thresh must be in [0, 1], got 5']]]);
    expect(e.other).toEqual(['no points']);
    expect(prefillErrors({ detail: 'Your role (reviewer) may not change pre-fill settings in this project.' }, 'x').other)
      .toEqual(['Your role (reviewer) may not change pre-fill settings in this project.']);
    expect(prefillErrors(null, 'network error: down').other).toEqual(['network error: down']);
    expect(prefillErrors({ enabled: ['Must be a valid boolean.'] }, 'x').enabled).toEqual(['Must be a valid boolean.']);
  });

  it('progress in one line, busy while images are queued or running', () => {
    const p = prefillProgress(true, { none: 1, pending: 2, running: 1, ready: 3, failed: 1 }, { pending: 5, accepted: 2, edited: 1, rejected: 0 });
    expect(p).toMatchObject({ busy: true, ready: 3, images: 8 });
    expect(p.text).toBe('3 of 8 images pre-filled, 1 running, 2 queued, 1 failed, 1 not pre-filled yet · proposals: 5 to review, '
      + '2 accepted, 1 edited, 0 rejected');
    const off = prefillProgress(false, { none: 1 }, {});
    expect(off.busy).toBe(false);
    expect(off.text).toContain('pre-fill is off');
  });
});

describe('model versions', () => {
  const models = [
    { id: 1, model_id: 'default-aaa', name: 'Shipped', source: 'shipped' },
    { id: 2, model_id: 'vit_b-bbb', name: 'SAM ViT-B', source: 'installed' },
  ];

  it('following the default is the first option; others by id', () => {
    const { options, selected } = versionOptions(models, { id: 1, model_id: 'default-aaa', name: 'Shipped' }, true);
    expect(options.map((o) => o.value)).toEqual(['', '2']);
    expect(options[0]?.label).toBe('Server default: Shipped (default-aaa, shipped)');
    expect(selected).toBe('');
  });

  it('a version pinned or no longer offered is still shown, selected', () => {
    const pinned = versionOptions(models, { id: 1, model_id: 'default-aaa', name: 'Shipped' }, false);
    expect(pinned.options.map((o) => o.value)).toEqual(['', '2', '1']);
    expect(pinned.selected).toBe('1');
    const gone = versionOptions(models, { id: 9, model_id: 'vit_h-zzz', name: 'Old' }, false);
    expect(gone.options.at(-1)).toEqual({ value: '9', label: 'Old (vit_h-zzz) (current)' });
  });

  it('re-embedding progress', () => {
    expect(embeddingProgress({ model_id: 'vit_b-bbb', images: 4, embedded: 1, pending: 3, failed: 0, done: false }))
      .toEqual({ fraction: 0.25, text: '1 of 4 images embedded with vit_b-bbb · 3 pending', done: false });
    expect(embeddingProgress({ model_id: 'm', images: 0, embedded: 0, pending: 0, failed: 0, done: true }).fraction).toBe(1);
    expect(embeddingProgress({ model_id: 'm', images: 2, embedded: 1, pending: 0, failed: 1, done: true }).text)
      .toBe('1 of 2 images embedded with m, 1 failed · done');
  });
});

describe('members', () => {
  const admin: MemberInfo = { user: 1, username: 'boss', role: 'admin' };
  const manager: MemberInfo = { user: 2, username: 'mo', role: 'manager' };

  it('only who may administer changes an admin; the admin role is offered to them only', () => {
    expect(memberEditable(admin, false)).toBe(false);
    expect(memberEditable(admin, true)).toBe(true);
    expect(memberEditable(manager, false)).toBe(true);
    expect(roleChoices(manager, ['manager', 'reviewer', 'annotator'])).toEqual(['manager', 'reviewer', 'annotator']);
    expect(roleChoices(admin, ['manager', 'reviewer'])).toEqual(['admin', 'manager', 'reviewer']);
  });

  it('knows the last admin', () => {
    expect(isLastAdmin(admin, [admin, manager])).toBe(true);
    expect(isLastAdmin(admin, [admin, { ...manager, role: 'admin' }])).toBe(false);
    expect(isLastAdmin(manager, [admin, manager])).toBe(false);
  });
});
