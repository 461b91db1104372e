/**
 * The images this page came from, for P on an annotator's page: N follows the work queue
 * (the server's `next_id` in queue order), P goes back the way the annotator came, also to
 * images that left the queue meanwhile (marked done, taken by someone else).
 */
export class NavHistory {
  private readonly ids: number[] = [];

  constructor(private readonly limit = 200) {}

  /** The image left for another one (the same image twice in a row is kept once). */
  push(id: number): void {
    if (this.ids[this.ids.length - 1] === id) return;
    this.ids.push(id);
    if (this.ids.length > this.limit) this.ids.splice(0, this.ids.length - this.limit);
  }

  /** The image P would go back to, left in the history. */
  peek(): number | null {
    return this.ids[this.ids.length - 1] ?? null;
  }

  /** The image to go back to (removed from the history), or null when there is none. */
  pop(): number | null {
    return this.ids.pop() ?? null;
  }

  get size(): number {
    return this.ids.length;
  }
}

/**
 * Where N / P go from an image: `next_id` / `prev_id` for the project's order; for a queue
 * (annotators), N = `next_id` (the queue's next) and P = back in the page's history, else the
 * queue's previous image. `fromHistory` says that the id must be taken off the history.
 */
export function navigationTarget(dir: 'next' | 'prev', image: { next_id?: number | null; prev_id?: number | null; neighbour_order?: string } | null,
  historyTop: number | null): { id: number; fromHistory: boolean } | null {
  if (!image) return null;
  if (dir === 'next') return image.next_id ? { id: image.next_id, fromHistory: false } : null;
  if (image.neighbour_order === 'queue' && historyTop !== null) return { id: historyTop, fromHistory: true };
  return image.prev_id ? { id: image.prev_id, fromHistory: false } : null;
}
