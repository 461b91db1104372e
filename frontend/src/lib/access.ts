/**
 * What the user's role lets the annotate page do, read from the template's data attributes
 * (annotator/core/views.py `annotate`), and which keyboard commands write. A role that may
 * view but not annotate (a reviewer) gets a read-only page: it browses and never writes.
 * The server stays the authority (writes answer 403); this only keeps the page honest.
 */

export interface Access {
  /** The role's row of permissions.ROLE_ACTIONS has `annotate` (or a site admin). */
  mayAnnotate: boolean;
  /** ... has `review`: the read-only banner then links to the review page. */
  mayReview: boolean;
  /** The member's role in the project ('' for a site admin who is no member). */
  role: string;
  /** The project's review page, '' when the user may not review. */
  reviewUrl: string;
}

/** A page as it was before roles shaped it: everything on, the server refuses what it must. */
export const FULL_ACCESS: Access = { mayAnnotate: true, mayReview: false, role: '', reviewUrl: '' };

function flag(v: string | undefined, fallback: boolean): boolean {
  if (v === 'true') return true;
  if (v === 'false') return false;
  return fallback;
}

/**
 * Reads `data-may-annotate`, `data-may-review`, `data-role`, `data-review-url`. A page
 * without them (an older template) stays editable: the attributes shape the page, they do
 * not secure anything.
 */
export function accessFromDataset(d: Record<string, string | undefined>): Access {
  const mayReview = flag(d['mayReview'], false);
  return {
    mayAnnotate: flag(d['mayAnnotate'], true),
    mayReview,
    role: d['role'] ?? '',
    reviewUrl: mayReview ? (d['reviewUrl'] ?? '') : '',
  };
}

export function isReadOnly(a: Access): boolean {
  return !a.mayAnnotate;
}

/** The banner over a read-only page. */
export function readOnlyText(a: Access): string {
  return `Read-only: your role (${a.role || 'none'}) may view this project's images, not annotate them`;
}

/**
 * Where the banner's link goes for a reviewer: the image's row on the review page when the
 * image waits for review there (only `done` images are listed), else the review list.
 * null when the user may not review.
 */
export function reviewLink(a: Access, image: { id: number; status?: string } | null): { href: string; text: string } | null {
  if (!a.mayReview || !a.reviewUrl) return null;
  if (image && image.status === 'done') {
    return { href: `${a.reviewUrl}#review-image-${image.id}`, text: 'Approve or reject this image on the review page →' };
  }
  return { href: a.reviewUrl, text: 'Review page →' };
}

export type Command =
  | 'undo' | 'clear' | 'save' | 'candidate' | 'next' | 'prev' | 'proposal-focus'
  | 'accept' | 'accept-above' | 'reject' | 'edit' | 'shade'
  | 'zoom-in' | 'zoom-out' | 'zoom-fit' | 'pan' | 'brush' | 'brush-smaller' | 'brush-larger';

/** Commands that only change what is shown: the ones a read-only page keeps. */
export const VIEW_COMMANDS: ReadonlySet<Command> = new Set<Command>([
  'next', 'prev', 'proposal-focus', 'shade', 'zoom-in', 'zoom-out', 'zoom-fit', 'pan',
]);

/** The annotate page's keyboard map (README "Using it"): a key to its command, or null. */
export function keyCommand(key: string, mods: { ctrl?: boolean; meta?: boolean; alt?: boolean } = {}): Command | null {
  const ctrl = Boolean(mods.ctrl || mods.meta);
  if (ctrl && (key === 'z' || key === 'Z')) return 'undo';
  if (ctrl || mods.alt) return null;
  switch (key) {
    case 'Escape': return 'clear';
    case 'Enter': return 'save';
    case '0': case '1': case '2': case '3': return 'candidate';
    case 'n': case 'N': return 'next';
    case 'p': case 'P': return 'prev';
    case 'Tab': return 'proposal-focus';
    case 'a': return 'accept';
    case 'A': return 'accept-above';
    case 'x': case 'X': case 'Delete': return 'reject';
    case 'e': case 'E': return 'edit';
    case 'm': case 'M': return 'shade';
    case '+': case '=': return 'zoom-in';
    case '-': case '_': return 'zoom-out';
    case 'f': case 'F': return 'zoom-fit';
    case 'b': case 'B': return 'brush';
    case '[': return 'brush-smaller';
    case ']': return 'brush-larger';
    case 'ArrowLeft': case 'ArrowRight': case 'ArrowUp': case 'ArrowDown': return 'pan';
    default: return null;
  }
}

/** Whether the page may run `cmd` (a read-only page runs only the view commands). */
export function commandAllowed(cmd: Command, a: Access): boolean {
  return a.mayAnnotate || VIEW_COMMANDS.has(cmd);
}
