/**
 * Team work on the annotate page: the lease on the open image (taken on open, renewed by a
 * heartbeat, given back on leaving the image or the page — unless a save of it still waits
 * in the outbox — and taken again when the browser restores the page from its
 * back/forward cache; each page holds it under its own token, so a second tab of the same
 * user takes it over and this one says so instead of "yours"), "Done" (the image goes to
 * review, the queue gives the next one), and the work bar that shows the image's state —
 * a reviewer's rejection comment, who else holds it — and, on a read-only page (a role that
 * may not annotate), the banner that says so. docs/api.md "Work queue".
 */
import { acquireLease, ApiError, markDone, queueNext, releaseLease, type ImageInfo, type Lease } from './api';
import { readOnlyText, reviewLink } from './lib/access';
import { newClientKey } from './lib/outbox';
import type { AnnotateState, Store, WorkState } from './store';

const HEARTBEAT_MS = 60_000;
/** While someone else holds the open image, ask again this often: the page takes the image
 * as soon as they leave it (or their lease lapses) instead of until a reload (QA pass). */
export const WAIT_FOR_LEASE_MS = 15_000;
const WORKABLE = new Set(['new', 'in_progress', 'rejected']);

/** The page's role (the template's) and the project's actions (the API's) both allow it. */
function canAnnotate(s: AnnotateState): boolean {
  return s.access.mayAnnotate && (s.project?.actions?.includes('annotate') ?? false);
}

/**
 * Whether the page offers "Take over": someone else holds the open image's lease and this
 * user may break leases (the project's `assign` action: managers and admins, see
 * permissions.py) as well as annotate.
 */
export function mayTakeOver(s: AnnotateState): boolean {
  return s.work.lease === 'other' && canAnnotate(s) && (s.project?.actions?.includes('assign') ?? false);
}

/** The confirm step's question: names whom the image is taken from, and what it does to them. */
export function takeOverQuestion(holder: string | null): string {
  const who = holder || 'the other annotator';
  return `Take this image over from ${who}? Their page stops saving on it (unsaved changes are refused).`;
}

/** A renew refused because another tab or window of this user took the lease over. */
export function isLeaseElsewhere(e: unknown): boolean {
  return e instanceof ApiError && e.status === 409 && (e.body as { code?: string } | null)?.code === 'lease_elsewhere';
}

function leaseFromError(e: unknown): Lease | null {
  if (!(e instanceof ApiError) || e.status !== 409 || isLeaseElsewhere(e)) return null;
  const lease = (e.body as { lease?: Lease } | null)?.lease;
  return lease ?? null;
}

/**
 * The image status the work bar shows. Taking the lease moves a new or rejected image to
 * in_progress on the server (workflow._lease_write), whatever the image info said when the
 * page fetched it; so while anyone holds the lease (this page, another user, another tab of
 * ours), that is what it is (QA pass: "Image new · manager is working on it").
 */
export function shownStatus(status: string, lease: WorkState['lease']): string {
  return lease !== 'none' && (status === 'new' || status === 'rejected') ? 'in_progress' : status;
}

/** What the lease rule needs of a save kept in the outbox (lib/outbox.ts OutboxEntry). */
export interface PendingSave {
  imageId: number;
  /** Refused by the server for good: it is not sent again. */
  rejected: boolean;
}

/**
 * Whether leaving `imageId` may give its lease back. Not while a save of that image is
 * still only in the outbox: it is sent again (when the page is open again, from IndexedDB)
 * and must find the image still ours, not taken by another annotator meanwhile (their
 * lease would refuse it with 409); the lease then lapses by itself after its duration
 * (ANNOTATOR_LEASE_SECONDS, 10 min) unless the page comes back first. A save the server
 * refused for good is never sent again, so it does not hold the image.
 */
export function mayRelease(imageId: number, pending: readonly PendingSave[]): boolean {
  return !pending.some((e) => e.imageId === imageId && !e.rejected);
}

export class WorkSession {
  /** This page's lease token (docs/api.md "Work queue"): a second tab has its own. */
  readonly token = newClientKey();
  /** The image whose lease this page holds, if any. */
  private held: number | null = null;
  private heartbeat: ReturnType<typeof setInterval> | null = null;
  private waiting: ReturnType<typeof setTimeout> | null = null;

  /**
   * @param pendingSaves the saves still in the outbox (the lease of an image with one is
   *   kept when the page leaves it: see `mayRelease`).
   */
  constructor(private readonly store: Store, private readonly pendingSaves: () => readonly PendingSave[] = () => []) {
    // Closing the tab or going to another page gives the lease back at once (else it would
    // hold the image for its whole duration): a keepalive request outlives the page, and
    // carries the session cookie and the CSRF header as any other (sendBeacon could not).
    window.addEventListener('pagehide', () => this.leave());
    // Back to a page the browser kept in its back/forward cache: the lease was given back
    // on the way out; take it again now rather than at the next heartbeat.
    window.addEventListener('pageshow', (ev) => {
      if ((ev as PageTransitionEvent).persisted) this.resume();
    });
    // Back to this tab: renew now, so that a lease another tab took over meanwhile is
    // shown at once rather than at the next heartbeat.
    if (typeof document !== 'undefined') {
      document.addEventListener('visibilitychange', () => {
        if (document.visibilityState === 'visible' && this.held !== null) void this.take(this.held, true);
      });
    }
  }

  /** The page goes away (pagehide): give the lease back unless a save of it waits. */
  private leave(): void {
    this.stopHeartbeat();
    const held = this.held;
    this.held = null;
    if (held !== null && mayRelease(held, this.pendingSaves())) void releaseLease(held, true, this.token).catch(() => undefined);
  }

  /** The page is shown again from the back/forward cache: work on its image again. */
  private resume(): void {
    const image = this.store.get().image;
    if (image && this.held === null) void this.enter(image);
  }

  private setWork(patch: Partial<WorkState>): void {
    this.store.set((s) => ({ work: { ...s.work, ...patch } }));
  }

  /** The image is shown before its lease is asked for (a prefetched image: openImage asks at
   * a quiet moment): its state as the info says, nothing claimed as ours yet. */
  show(image: ImageInfo): void {
    const other = image.lease ?? null;
    this.setWork({ lease: 'none', holder: other?.holder ?? null, until: other?.expires_at ?? null, note: null });
  }

  /** The image was opened: give back the previous lease, take this one if we may work on it. */
  async enter(image: ImageInfo): Promise<void> {
    if (this.held !== null && this.held !== image.id) {
      const prev = this.held;
      this.held = null;
      if (mayRelease(prev, this.pendingSaves())) void releaseLease(prev, false, this.token).catch(() => undefined);
    }
    this.stopHeartbeat();
    const s = this.store.get();
    const other = image.lease ?? null;
    this.setWork({ lease: 'none', holder: other?.holder ?? null, until: other?.expires_at ?? null, note: null });
    // No lease (nor its heartbeat) for a role that may not annotate: a read-only page never writes.
    if (!canAnnotate(s) || !WORKABLE.has(image.status ?? 'new')) return;
    await this.take(image.id, false);
    if (this.held === image.id) this.heartbeat = setInterval(() => void this.take(image.id, true), HEARTBEAT_MS);
  }

  /** "Work here": this tab takes the lease back from the other tab that holds it. */
  async workHere(): Promise<void> {
    const image = this.store.get().image;
    if (image) await this.enter(image);
  }

  /**
   * "Take over" (a manager or admin): takes the open image's lease from whoever holds it;
   * their page is refused at its next renew or save and says so. Resolves when done.
   */
  async takeOver(): Promise<void> {
    const image = this.store.get().image;
    if (!image) return;
    this.stopHeartbeat();
    await this.take(image.id, false, true);
    if (this.held === image.id) this.heartbeat = setInterval(() => void this.take(image.id, true), HEARTBEAT_MS);
  }

  /** Takes the lease (`renew` false: opening the image) or renews it (the heartbeat);
   * `takeover` also from someone else (see takeOver). */
  private async take(imageId: number, renew: boolean, takeover = false): Promise<void> {
    try {
      const lease = await acquireLease(imageId, this.token, renew, takeover);
      if (this.store.get().image?.id !== imageId) {
        void releaseLease(imageId, false, this.token).catch(() => undefined); // navigated away meanwhile
        return;
      }
      this.held = imageId;
      this.setWork({ lease: 'mine', holder: lease.holder, until: lease.expires_at, note: null });
    } catch (e) {
      if (this.store.get().image?.id !== imageId) return;
      this.held = null;
      this.stopHeartbeat();
      const lease = leaseFromError(e);
      if (isLeaseElsewhere(e)) this.setWork({ lease: 'elsewhere', holder: null, until: null, note: null });
      // A refused take-over (no longer a manager, the image gone…): still theirs, and why.
      else if (takeover && !lease) this.setWork({ note: e instanceof ApiError ? e.message : String(e) });
      else if (lease) {
        this.setWork({ lease: 'other', holder: lease.holder, until: lease.expires_at, note: null });
        this.waitForLease(imageId);
      } else this.setWork({ lease: 'none', note: e instanceof ApiError ? e.message : String(e) });
    }
  }

  /**
   * Someone else holds `imageId`: ask for it again in WAIT_FOR_LEASE_MS (and again while they
   * still hold it), and once it is free take it and start the heartbeat, as opening it would.
   * Stops when another image is opened, the page takes the lease another way, or the state is
   * no longer "someone else holds it".
   */
  private waitForLease(imageId: number): void {
    this.stopWaiting();
    this.waiting = setTimeout(() => {
      this.waiting = null;
      const s = this.store.get();
      if (s.image?.id !== imageId || this.held !== null || s.work.lease !== 'other') return;
      void this.take(imageId, false).then(() => {
        if (this.held === imageId && this.heartbeat === null) {
          this.heartbeat = setInterval(() => void this.take(imageId, true), HEARTBEAT_MS);
        }
      });
    }, WAIT_FOR_LEASE_MS);
  }

  private stopWaiting(): void {
    if (this.waiting !== null) clearTimeout(this.waiting);
    this.waiting = null;
  }

  /**
   * A mask write on `imageId` came back 409 because someone else holds its lease now (a
   * manager broke ours, or it lapsed and was taken): the bar stops saying "yours" and names
   * them, as a refused heartbeat would. Returns whether the error was such a conflict.
   */
  lostLease(imageId: number, e: unknown): boolean {
    const lease = leaseFromError(e);
    if (!lease) return false;
    if (this.store.get().image?.id !== imageId) return true;
    if (this.held === imageId) this.held = null;
    this.stopHeartbeat();
    this.setWork({ lease: 'other', holder: lease.holder, until: lease.expires_at, note: null });
    this.waitForLease(imageId);
    return true;
  }

  private stopHeartbeat(): void {
    if (this.heartbeat !== null) clearInterval(this.heartbeat);
    this.heartbeat = null;
    this.stopWaiting();
  }

  /** "Done": the image goes to review; resolves to the next image of the queue (null: empty). */
  async done(imageId: number): Promise<ImageInfo | null> {
    this.setWork({ finishing: true });
    try {
      await markDone(imageId);
      if (this.held === imageId) this.held = null;
      this.stopHeartbeat();
      return await queueNext(this.store.get().project?.id ?? 0);
    } finally {
      this.setWork({ finishing: false });
    }
  }
}

function el<K extends keyof HTMLElementTagNameMap>(tag: K, cls: string, id?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  e.className = cls;
  if (id) e.id = id;
  return e;
}

function hhmm(iso: string | null): string {
  if (!iso) return '';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

/** The bar under the toolbar: the image's work state, the reviewer's comment, and "Done". */
export class WorkBar {
  readonly element = el('div', 'work-bar', 'work-bar');
  private readonly state = el('span', 'work-state', 'work-state');
  private readonly review = el('span', 'review-banner', 'review-banner');
  private readonly doneBtn = el('button', 'btn primary', 'done-btn');
  private readonly workHereBtn = el('button', 'btn', 'work-here-btn');
  private readonly takeOverBtn = el('button', 'btn', 'take-over-btn');
  /** The confirm step of "Take over": the question naming the holder, and yes / cancel. */
  private readonly takeOverConfirm = el('span', 'take-over-confirm', 'take-over-confirm');
  private readonly takeOverText = el('span', 'take-over-text', 'take-over-text');
  private readonly takeOverYes = el('button', 'btn primary', 'take-over-yes');
  private readonly takeOverNo = el('button', 'btn', 'take-over-no');
  private confirming = false;
  private lastStore: AnnotateState | null = null;
  private readonly readOnlyBanner = el('span', 'readonly-banner', 'readonly-banner');
  private readonly bannerText = el('span', 'readonly-text');
  private readonly bannerLink = el('a', 'readonly-review-link', 'readonly-review-link');

  /**
   * @param onWorkHere "Work here" (shown while another tab of the user holds the lease).
   * @param onTakeOver "Take over", once confirmed (shown to managers and admins while
   *   someone else holds the lease).
   */
  constructor(store: Store, onDone: () => void, onWorkHere: () => void = () => {}, onTakeOver: () => void = () => {}) {
    this.review.hidden = true;
    this.readOnlyBanner.hidden = true;
    this.readOnlyBanner.setAttribute('role', 'note');
    this.readOnlyBanner.append(this.bannerText, this.bannerLink);
    this.doneBtn.textContent = 'Done ✓ next image';
    this.doneBtn.title = 'This image is finished: send it to review and open the next image of your queue';
    this.doneBtn.onclick = () => onDone();
    this.doneBtn.addEventListener('mousedown', (ev) => ev.preventDefault()); // keep Enter for saving
    this.workHereBtn.textContent = 'Work here';
    this.workHereBtn.title = 'Take this image back from your other tab or window (it will say so at its next renew)';
    this.workHereBtn.hidden = true;
    this.workHereBtn.onclick = () => onWorkHere();
    this.workHereBtn.addEventListener('mousedown', (ev) => ev.preventDefault());
    this.takeOverBtn.textContent = 'Take over';
    this.takeOverBtn.title = 'Take this image over from the annotator who holds it (managers and admins)';
    this.takeOverBtn.hidden = true;
    this.takeOverBtn.onclick = () => this.confirm(true);
    this.takeOverYes.textContent = 'Take over';
    this.takeOverNo.textContent = 'Cancel';
    this.takeOverYes.onclick = () => {
      this.confirm(false);
      onTakeOver();
    };
    this.takeOverNo.onclick = () => this.confirm(false);
    this.takeOverConfirm.setAttribute('role', 'alertdialog');
    this.takeOverConfirm.append(this.takeOverText, this.takeOverYes, this.takeOverNo);
    this.takeOverConfirm.hidden = true;
    for (const b of [this.workHereBtn, this.takeOverBtn, this.takeOverYes, this.takeOverNo]) {
      b.addEventListener('mousedown', (ev) => ev.preventDefault()); // keep keys for the page
    }
    this.element.append(this.readOnlyBanner, this.state, this.workHereBtn, this.takeOverBtn, this.takeOverConfirm, this.review,
      this.doneBtn);
    store.subscribe((s, prev) => {
      if (s.image !== prev.image || s.work !== prev.work || s.project !== prev.project || s.access !== prev.access
        || s.imageError !== prev.imageError) this.render(s);
    });
  }

  /** Shows (or hides) the confirm step of "Take over". */
  private confirm(on: boolean): void {
    this.confirming = on;
    if (this.lastStore) this.render(this.lastStore);
    if (on) this.takeOverNo.focus();
  }

  private render(s: AnnotateState): void {
    this.lastStore = s;
    const img = s.image;
    const w = s.work;
    const status = shownStatus(img?.status ?? 'new', w.lease);
    this.element.dataset['status'] = status;
    this.element.dataset['lease'] = w.lease;
    let text = img ? `Image ${status.replace('_', ' ')}` : s.imageError ? 'No image open' : 'Loading…';
    if (w.lease === 'mine') text += ` · yours until ${hhmm(w.until)}`;
    else if (w.lease === 'other') {
      text += ` · ${w.holder} is working on it until ${hhmm(w.until)}: your changes would be refused`;
      if (w.note) text += ` · ${w.note}`;
    }
    else if (w.lease === 'elsewhere') text += ' · open in another tab or window of yours, which holds it now: work there, or here with "Work here"';
    else if (w.note) text += ` · ${w.note}`;
    if (status === 'done') text += ' · waiting for review';
    if (img?.assignee) text += ` · assigned to ${img.assignee}`;
    this.state.textContent = text;
    this.element.classList.toggle('conflict', w.lease === 'other' || w.lease === 'elsewhere');
    this.workHereBtn.hidden = w.lease !== 'elsewhere';
    const takeOver = mayTakeOver(s);
    if (!takeOver) this.confirming = false; // the holder left, or the image changed
    this.takeOverBtn.hidden = !takeOver || this.confirming;
    this.takeOverConfirm.hidden = !takeOver || !this.confirming;
    this.takeOverText.textContent = takeOver ? takeOverQuestion(w.holder) : '';
    // A rejection stays visible until the annotator marks the image done again.
    const r = img?.last_review;
    const showRejection = r?.decision === 'rejected' && (status === 'rejected' || status === 'in_progress' || status === 'new');
    this.review.hidden = !showRejection;
    this.review.textContent = showRejection ? `Rejected by ${r.reviewer}: ${r.comment}` : '';
    this.renderReadOnly(s);
    const mayFinish = canAnnotate(s) && WORKABLE.has(status) && w.lease !== 'other' && w.lease !== 'elsewhere';
    this.doneBtn.hidden = !canAnnotate(s);
    this.doneBtn.disabled = !img || !mayFinish || w.finishing || s.saving;
  }

  private renderReadOnly(s: AnnotateState): void {
    const ro = !s.access.mayAnnotate;
    this.readOnlyBanner.hidden = !ro;
    if (!ro) return;
    this.bannerText.textContent = readOnlyText(s.access);
    const link = reviewLink(s.access, s.image);
    this.bannerLink.hidden = !link;
    this.bannerLink.textContent = link?.text ?? '';
    if (link) this.bannerLink.href = link.href;
    else this.bannerLink.removeAttribute('href');
  }
}
