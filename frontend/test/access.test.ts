import { describe, expect, it } from 'vitest';
import {
  accessFromDataset,
  commandAllowed,
  FULL_ACCESS,
  isReadOnly,
  keyCommand,
  readOnlyText,
  reviewLink,
  type Command,
} from '../src/lib/access';

const reviewer = accessFromDataset({ role: 'reviewer', mayAnnotate: 'false', mayReview: 'true', reviewUrl: '/projects/3/review/' });
const annotator = accessFromDataset({ role: 'annotator', mayAnnotate: 'true', mayReview: 'false' });

describe('access from the template', () => {
  it('reads the role and what it may do', () => {
    expect(reviewer).toEqual({ mayAnnotate: false, mayReview: true, role: 'reviewer', reviewUrl: '/projects/3/review/' });
    expect(isReadOnly(reviewer)).toBe(true);
    expect(isReadOnly(annotator)).toBe(false);
  });

  it('keeps a page without the attributes editable (the server decides)', () => {
    expect(accessFromDataset({})).toEqual(FULL_ACCESS);
    expect(accessFromDataset({ mayAnnotate: 'yes' }).mayAnnotate).toBe(true);
  });

  it('has no review link for a role that may not review, whatever the URL says', () => {
    const a = accessFromDataset({ role: 'x', mayAnnotate: 'false', mayReview: 'false', reviewUrl: '/projects/3/review/' });
    expect(a.reviewUrl).toBe('');
    expect(reviewLink(a, { id: 7, status: 'done' })).toBeNull();
  });

  it('says read-only with the role', () => {
    expect(readOnlyText(reviewer)).toBe("Read-only: your role (reviewer) may view this project's images, not annotate them");
  });

  it('links a done image to its row on the review page, any other to the list', () => {
    expect(reviewLink(reviewer, { id: 7, status: 'done' })?.href).toBe('/projects/3/review/#review-image-7');
    expect(reviewLink(reviewer, { id: 7, status: 'in_progress' })?.href).toBe('/projects/3/review/');
    expect(reviewLink(reviewer, null)?.href).toBe('/projects/3/review/');
  });
});

describe('keyboard commands', () => {
  it('maps the README keys', () => {
    const cases: [string, object, Command | null][] = [
      ['z', { ctrl: true }, 'undo'], ['Z', { meta: true }, 'undo'], ['Escape', {}, 'clear'], ['Enter', {}, 'save'],
      ['2', {}, 'candidate'], ['0', {}, 'candidate'], ['n', {}, 'next'], ['P', {}, 'prev'], ['Tab', {}, 'proposal-focus'],
      ['a', {}, 'accept'], ['A', {}, 'accept-above'], ['Delete', {}, 'reject'], ['x', {}, 'reject'],
      ['E', {}, 'edit'], ['m', {}, 'shade'], ['n', { ctrl: true }, null], ['a', { alt: true }, null], ['q', {}, null],
      ['+', {}, 'zoom-in'], ['=', {}, 'zoom-in'], ['-', {}, 'zoom-out'], ['f', {}, 'zoom-fit'], ['F', {}, 'zoom-fit'],
      ['ArrowLeft', {}, 'pan'], ['ArrowDown', {}, 'pan'], ['-', { ctrl: true }, null],
      ['b', {}, 'brush'], ['B', {}, 'brush'], ['[', {}, 'brush-smaller'], [']', {}, 'brush-larger'], ['b', { ctrl: true }, null],
    ];
    for (const [key, mods, cmd] of cases) expect(keyCommand(key, mods), `${key} ${JSON.stringify(mods)}`).toBe(cmd);
  });

  it('a read-only page keeps only the keys that change what is shown', () => {
    const all: Command[] = ['undo', 'clear', 'save', 'candidate', 'next', 'prev', 'proposal-focus', 'accept', 'accept-above',
      'reject', 'edit', 'shade', 'zoom-in', 'zoom-out', 'zoom-fit', 'pan', 'brush', 'brush-smaller', 'brush-larger'];
    expect(all.filter((c) => commandAllowed(c, reviewer))).toEqual(['next', 'prev', 'proposal-focus', 'shade', 'zoom-in',
      'zoom-out', 'zoom-fit', 'pan']);
    expect(all.every((c) => commandAllowed(c, annotator))).toBe(true);
  });
});
