import { describe, expect, it } from 'vitest';
import { deletedLabel, selectionAfterReload } from '../src/lib/labels';

const before = [{ id: 10, name: 'cat' }, { id: 11, name: 'zebra' }];
const after = [{ id: 10, name: 'cat' }];

describe('deletedLabel', () => {
  it('names the deleted label and says what to do', () => {
    expect(deletedLabel(11, before, after)).toEqual({
      id: 11, name: 'zebra', message: "The label 'zebra' was deleted; pick another label and press Enter",
    });
  });

  it('is null when the label still exists or the save had none', () => {
    expect(deletedLabel(10, before, after)).toBeNull();
    expect(deletedLabel(null, before, after)).toBeNull();
  });

  it('falls back to the id for a label the page never listed', () => {
    expect(deletedLabel(12, before, after)?.message).toBe('The label #12 was deleted; pick another label and press Enter');
  });
});

describe('selectionAfterReload', () => {
  it('keeps a label that still exists and drops a deleted one', () => {
    expect(selectionAfterReload(10, after)).toBe(10);
    expect(selectionAfterReload(11, after)).toBeNull();
    expect(selectionAfterReload(null, after)).toBeNull();
  });
});
