import { describe, expect, it } from 'vitest';
import { duplicateCategoryRows, nextCategoryColor, projectFormErrors, projectRequest } from '../src/lib/projectForm';

const PALETTE = ['#e6194b', '#3cb44b', '#4363d8'];

describe('the "New project" request', () => {
  it('sends every field and leaves blank category rows out, remembering each row', () => {
    const { body, rows } = projectRequest({
      name: ' Cars ',
      categories: [
        { name: 'car', color: '#e6194b' },
        { name: '   ', color: '#3cb44b' },
        { name: ' wheel ', color: '#4363d8' },
      ],
      modelVersion: 7,
      prefillEnabled: false,
    });
    expect(body).toEqual({
      name: ' Cars ', // the server trims and judges the name
      categories: [{ name: 'car', color: '#e6194b' }, { name: 'wheel', color: '#4363d8' }],
      model_version: 7,
      prefill_enabled: false,
    });
    expect(rows).toEqual([0, 2]);
  });

  it('null model version: follow the server default', () => {
    expect(projectRequest({ name: 'x', categories: [], modelVersion: null, prefillEnabled: true }).body.model_version).toBeNull();
  });
});

describe('the API\'s errors go next to their fields', () => {
  it('field errors, and a category\'s errors on the form row it came from', () => {
    const e = projectFormErrors(
      {
        name: ['This field may not be blank.'],
        categories: { '1': { color: ['A colour is #rrggbb, e.g. #e6194b.'] } },
        model_version: ['No model version 99.'],
      },
      [0, 2],
      'HTTP 400 Bad Request',
    );
    expect(e.name).toEqual(['This field may not be blank.']);
    expect(e.model_version).toEqual(['No model version 99.']);
    expect([...e.categoryRows.entries()]).toEqual([[2, ['A colour is #rrggbb, e.g. #e6194b.']]]);
    expect(e.categories).toEqual([]);
    expect(e.other).toEqual([]);
  });

  it('list-level category errors, details and unknown fields', () => {
    const e = projectFormErrors({ categories: ['Expected a list of items but got type "str".'], surprise: ['x'] }, [], 'f');
    expect(e.categories).toEqual(['Expected a list of items but got type "str".']);
    expect(e.other).toEqual(['x']);
    expect(projectFormErrors({ detail: 'Authentication credentials were not provided.' }, [], 'f').other).toEqual([
      'Authentication credentials were not provided.',
    ]);
  });

  it('an index the form did not send is not lost', () => {
    const e = projectFormErrors({ categories: { '5': ['Bad.'] } }, [0], 'f');
    expect(e.categories).toEqual(['Bad.']);
    expect(e.categoryRows.size).toBe(0);
  });

  it('no usable body (network error, HTML 500): the fallback message', () => {
    expect(projectFormErrors(null, [], 'network error: Failed to fetch').other).toEqual(['network error: Failed to fetch']);
    expect(projectFormErrors('<html>500</html>', [], 'HTTP 500 Internal Server Error').other).toEqual(['HTTP 500 Internal Server Error']);
  });
});

describe('colours offered for new rows', () => {
  it('the first palette colour no row uses, then round the palette', () => {
    expect(nextCategoryColor([], PALETTE)).toBe('#e6194b');
    expect(nextCategoryColor([{ name: 'a', color: '#E6194B' }], PALETTE)).toBe('#3cb44b');
    const full = PALETTE.map((color, i) => ({ name: String(i), color }));
    expect(nextCategoryColor(full, PALETTE)).toBe('#e6194b');
    expect(nextCategoryColor([...full, { name: 'x', color: '#000000' }], PALETTE)).toBe('#3cb44b');
  });
  it('refuses an empty palette', () => {
    expect(() => nextCategoryColor([], [])).toThrow(/empty palette/);
  });
});

describe('repeated label names in the form', () => {
  it('flag every row that repeats an earlier one (trimmed), on that row, naming the first', () => {
    const dupes = duplicateCategoryRows([
      { name: 'car', color: '#e6194b' },
      { name: 'wheel', color: '#3cb44b' },
      { name: ' car ', color: '#4363d8' },
      { name: '', color: '#000000' },
      { name: '  ', color: '#000000' },
      { name: 'car', color: '#000000' },
    ]);
    expect([...dupes.keys()]).toEqual([2, 5]);
    expect(dupes.get(2)).toEqual(['"car" is already label 1: remove this row or rename it.']);
  });

  it('none for distinct names (case counts: the server keeps "Car" and "car" apart)', () => {
    expect(duplicateCategoryRows([{ name: 'car', color: '#e6194b' }, { name: 'Car', color: '#3cb44b' }]).size).toBe(0);
  });
});
