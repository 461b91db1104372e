/**
 * The annotate page controller: loads project, decoder and image, turns pointer and
 * keyboard input into prompts, runs the decoder through the bridge, saves masks through
 * the API, and writes every outcome into the store.
 */
import {
  acceptProposal,
  acceptProposalsAbove,
  ApiError,
  createAnnotation,
  decoderUrl,
  deleteAnnotation,
  getEmbedding,
  ModelMismatchError,
  modelChangedTo,
  getImage,
  getProject,
  imageFileUrl,
  listAnnotations,
  listImages,
  listModels,
  listProposals,
  rejectProposal,
  setApiRoot,
  updateAnnotation,
  type Annotation,
  type AnnotationCreate,
  type ImageInfo,
  type Proposal,
} from './api';
import { CanvasView } from './canvas';
import { DecoderBridge, SupersededError } from './decoder/bridge';
import { ServerDecoder } from './decoder/server';
import { commandAllowed, FULL_ACCESS, isReadOnly, keyCommand, readOnlyText, type Access } from './lib/access';
import { applyStroke, buildLayer, layerCounts, nextRadius, undoTarget, type StrokeMode } from './lib/brush';
import { buildFeeds, lowResCandidate } from './lib/feeds';
import { defaultCandidate, normalizeBox, promptsPayload, type Prompts } from './lib/prompts';
import { bestMatchingCandidate, focusAfterRemoval, moveFocus, tabLeavesProposals, THRESHOLD_REFUSED } from './lib/proposals';
import {
  classifyStatus,
  IdbOutboxStore,
  MemoryOutboxStore,
  newClientKey,
  Outbox,
  type OutboxEntry,
  type SendOutcome,
} from './lib/outbox';
import { LruCache } from './lib/lru';
import { deletedLabel, selectionAfterReload } from './lib/labels';
import { navigationTarget, NavHistory } from './lib/history';
import { QuietQueue } from './lib/quiet';
import { openRetryDelay, openRetryText } from './lib/retry';
import { decodeRle, encodeRle, type CocoRle } from './lib/rle';
import {
  currentPrompts,
  finalMask,
  currentStep,
  focusedProposal,
  isReady,
  saveBlocker,
  shownStep,
  Store,
  type ProposalMask,
  type EditLayer,
  type SavedMask,
  type Step,
} from './store';

/** No hand edits and no saved mask being edited (a new image, a cleared or saved mask). */
const NO_EDIT = { edit: null, editingAnnotation: null } as const;
import './work.css';
import { Panel } from './ui';
import { ActiveTimer } from './lib/activity';
import { WorkBar, WorkSession } from './work';

export const WASM_PATHS = '/static/app/ort/';
const POLL_MS = [500, 1000, 1000, 2000, 2000, 3000];
/** Pre-fill states whose proposal list is final (the others are polled until they are). */
const PROPOSALS_SETTLED: ReadonlySet<string> = new Set(['none', 'ready', 'failed']);
/** How often saves kept in the outbox are tried again while any wait. */
const OUTBOX_RETRY_MS = 3000;
/** A save with no answer by then counts as failed: it stays in the outbox and is retried
 * (the server dedups on client_key), and the saves after it are not held up. */
const SAVE_TIMEOUT_MS = 10_000;
/** Background work of the open image waits for a quiet moment (lib/quiet.ts): this long
 * after the image turns ready if no prompt comes, or QUIET_AFTER_MASK_MS after a mask is
 * painted with no decode in flight. First the re-check of what was shown from the prefetch
 * (info, masks, proposals) and the lease, later the next image's prefetch. */
const RECHECK_IDLE_MS = 400;
const PREFETCH_IDLE_MS = 1500;
const QUIET_AFTER_MASK_MS = 200;
/** A failed re-check (server unreachable) is tried again after these waits, the last repeated. */
const RECHECK_RETRY_MS = [1000, 2000, 4000, 8000, 15000, 30000];
/** How the message of a failed re-check starts (cleared once one succeeds). */
const REFRESH_FAILED = 'Could not refresh image';
/** Images whose info and decoded photo the page keeps (the previous, the open and the
 * prefetched next one, one spare): opening one of them needs no round trip. The photos'
 * decoded pixels are the browser's to drop; the info is fetched again on opening. */
const KEPT_IMAGES = 4;
/** Zoom per + / - press; pan per arrow press (screen px, x4 with Shift). */
const ZOOM_STEP = 1.5;
const PAN_STEP = 80;

/** What the page holds of an image besides its embedding: the info and the decoded photo,
 * and (from the prefetch only, used once) its saved masks and proposals. */
interface KeptImage {
  info: ImageInfo;
  picture: HTMLImageElement;
  annotations: Annotation[] | null;
  proposals: Proposal[] | null;
}

type SaveBody = AnnotationCreate;

export interface AppConfig {
  projectId: number;
  imageId: number | null;
  apiRoot: string;
  /** From the template's data attributes; a role that may not annotate gets a read-only page. */
  access?: Access;
}

declare global {
  interface Window {
    /** click-to-mask durations (ms), one per pointer prompt whose mask got painted. */
    __samPerf: number[];
    /** Per painted prompt: decoder session.run, whole worker request, and click-to-mask (ms). */
    __samPerfDetail: { runMs: number; workerMs: number; clickToMaskMs: number }[];
    /** Per embedding loaded into the worker: its fp16 -> float32 conversion there (ms). */
    __samEmbeddingLoads: { imageId: number; convertMs: number }[];
    /** True once the decoder and the current image's embedding are loaded. */
    __samReady: boolean;
    /** For tests: the shown mask as COCO RLE, the current prompts (image pixels), the image id. */
    __samDebug: { currentMaskRle(): CocoRle | null; prompts(): Prompts; imageId(): number | null };
  }
}

function errorText(e: unknown): string {
  if (e instanceof ApiError) return e.status ? `${e.message} (HTTP ${e.status})` : e.message;
  if (e instanceof Error) return e.message;
  return String(e);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));


export class AnnotateApp {
  readonly store = new Store();
  /** The decoder worker, started on first use: a read-only page never starts one. */
  private decoderBridge: DecoderBridge | null = null;
  /** Benchmark knob ?decoder=server: prompts are decoded by the server (POST /decode), not the
   * worker (which still loads the decoder and embeddings: the page's readiness is unchanged). */
  private readonly serverDecoder: ServerDecoder | null =
    new URLSearchParams(window.location.search).get('decoder') === 'server'
      ? new ServerDecoder(() => this.modelId(), { quantized: new URLSearchParams(window.location.search).get('quantized') === '1' })
      : null;
  /** Active time on the current mask: first prompt to save, idle gaps over 30 s removed. */
  private readonly active = new ActiveTimer();
  private readonly work = new WorkSession(this.store, () => this.outbox?.list() ?? []);
  /** Time on the focused proposal, for the `active_ms` of an accept or reject. */
  private readonly proposalClock = new ActiveTimer();
  /** Proposals with an accept/reject request in flight (a second key press is ignored). */
  private readonly deciding = new Set<number>();
  private acceptingAbove = false;
  /** Saves run one after another (the IndexedDB outbox keeps each before it is sent). */
  private saveChain: Promise<void> = Promise.resolve();
  /** The masks (their steps) with a save queued or in flight: a second Enter on one is ignored. */
  private readonly savesQueued = new Set<Step>();
  private navToken = 0;
  /** The images N (and Done) left, for P on an annotator's page (lib/history.ts). */
  private readonly history = new NavHistory();
  /** The next automatic try to open an image that failed to open (cleared by any newer open). */
  private openRetryTimer: number | null = null;
  /** The image being opened and not shown yet, with its info once known: N / P pressed
   * meanwhile step from it, not from the image still shown. */
  private opening: { id: number; info: ImageInfo | null } | null = null;
  /** N / P pressed while the image being opened has no info yet, applied once it has. */
  private queuedMoves: ('next' | 'prev')[] = [];
  private proposalsToken = 0;
  private clickSeq = 0;
  /** Per image id, from the prefetch or an earlier visit. */
  private readonly kept = new LruCache<number, KeptImage>(KEPT_IMAGES);
  /** Embedding loads in flight (prefetches, and early loads of an image being opened), by
   * image id: opening that image waits for it rather than downloading it again. */
  private readonly prefetching = new Map<number, Promise<void>>();
  /** The open image's background work, held back while a decode runs. */
  private readonly quiet = new QuietQueue(QUIET_AFTER_MASK_MS);
  /** Deleted on this page: a list that was on its way before the delete does not bring them back. */
  private readonly deletedAnnotations = new Set<number>();
  /** Saves not yet on the server, kept in IndexedDB (lib/outbox.ts); set up in start(). */
  private outbox: Outbox<SaveBody, Annotation> | null = null;
  /** The canvas view (zoom and pan keys go to it). */
  private view: CanvasView | null = null;

  constructor(
    private readonly root: HTMLElement,
    private readonly config: AppConfig,
  ) {
    this.store.set({ access: config.access ?? FULL_ACCESS });
    const readOnly = this.readOnly;
    window.__samPerf = [];
    window.__samPerfDetail = [];
    window.__samEmbeddingLoads = [];
    window.__samReady = false;
    window.__samDebug = {
      currentMaskRle: () => {
        const s = this.store.get();
        const m = finalMask(s);
        return m && s.image ? encodeRle(m.mask, s.image.height, s.image.width) : null;
      },
      prompts: () => shownStep(this.store.get())?.prompts ?? { points: [], box: null },
      imageId: () => this.store.get().image?.id ?? null,
    };
    root.classList.add('sam-app');
    root.classList.toggle('read-only', readOnly);
    const panel = new Panel(this.store, {
      prev: () => this.navigate('prev'),
      next: () => this.navigate('next'),
      undo: () => this.undo(),
      clear: () => this.clear(),
      save: () => void this.save(),
      chooseCandidate: (i) => this.chooseCandidate(i),
      chooseAutoCandidate: () => this.chooseAutoCandidate(),
      selectCategory: (id) => this.store.set({ categoryId: id }),
      deleteAnnotation: (id) => void this.removeAnnotation(id),
      focusProposal: (id) => this.focusProposal(id),
      acceptProposal: () => void this.acceptFocused(),
      rejectProposal: () => void this.rejectFocused(),
      editProposal: () => this.editFocused(),
      acceptAbove: () => void this.acceptAbove(),
      setThreshold: (t) => this.store.set((s) => ({ prefillThreshold: t, ...(s.message?.text.startsWith(THRESHOLD_REFUSED) ? { message: null } : {}) })),
      thresholdRefused: (text) => this.store.set({ message: { kind: 'error', text: `${text} Kept ${this.store.get().prefillThreshold}.` } }),
      toggleShade: () => this.store.set((s) => ({ shadeUncovered: !s.shadeUncovered })),
      toggleBrush: () => this.toggleBrush(),
      editAnnotation: (id) => this.editAnnotation(id),
    }, { readOnly });
    const body = document.createElement('div');
    body.className = 'body';
    const workBar = new WorkBar(this.store, () => void this.finishImage(), () => void this.work.workHere(),
      () => void this.work.takeOver());
    root.replaceChildren(panel.toolbar, workBar.element, body, panel.status);
    this.view = new CanvasView(body, this.store, {
      onClick: (x, y, negative, ts) => this.addPoint(x, y, negative, ts),
      onDrag: (x0, y0, x1, y1, done, ts) => this.dragBox(x0, y0, x1, y1, done, ts),
      onStroke: (phase, x, y, mode, radius) => this.stroke(phase, x, y, mode, radius),
    });
    body.append(panel.side);
    document.addEventListener('keydown', (ev) => this.onKey(ev));
    // Every input is activity: the active timers count the time between inputs, not idle gaps.
    for (const type of ['pointerdown', 'pointermove', 'keydown', 'wheel'] as const) {
      document.addEventListener(type, () => {
        this.active.touch();
        this.proposalClock.touch();
      }, { capture: true, passive: true });
    }
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'hidden') this.active.pause();
      else if (this.store.get().steps.length) this.active.start();
    });
    this.store.subscribe((s) => {
      const ready = isReady(s);
      if (window.__samReady !== ready) {
        window.__samReady = ready;
        document.body.dataset['samReady'] = String(ready);
      }
    });
  }

  async start(): Promise<void> {
    setApiRoot(this.config.apiRoot);
    // Read-only: no outbox (its retries are writes, possibly of another user's saves left in
    // this browser) and no decoder (nothing here makes a mask).
    if (!this.readOnly) await this.openOutbox();
    const projectP = getProject(this.config.projectId).then((project) => {
      this.store.set({ project, categoryId: project.categories[0]?.id ?? null });
      return project;
    });
    if (this.readOnly) this.store.set({ decoder: { phase: 'idle', detail: 'not loaded: read-only' } });
    else void this.loadDecoder(projectP).then(() => this.sayServerDecoder());
    let imageId = this.config.imageId;
    try {
      if (imageId === null) {
        const images = await listImages(this.config.projectId);
        if (!images.length) {
          this.store.set({ embedding: { phase: 'idle', detail: '' }, message: { kind: 'info', text: 'This project has no images yet.' } });
          return;
        }
        imageId = images[0]!.id;
      }
      await projectP;
    } catch (e) {
      this.store.set({ message: { kind: 'error', text: `Cannot load the project: ${errorText(e)}` } });
      return;
    }
    await this.openImage(imageId);
  }

  private async loadDecoder(projectP: Promise<{ model_id: string }>): Promise<void> {
    this.store.set({ decoder: { phase: 'loading', detail: '' } });
    try {
      const [project, models] = await Promise.all([projectP, listModels()]);
      const model = models.find((m) => m.model_id === project.model_id);
      if (!model) throw new Error(`model ${project.model_id} is not among the server's models (${models.map((m) => m.model_id).join(', ') || 'none'})`);
      this.store.set({ model, decoder: { phase: 'loading', detail: model.name } });
      // Benchmark knobs on the page URL: ?threads=N caps the wasm threads (default: the
      // worker's choice); ?quantized=1 loads the QUInt8 decoder the server can export;
      // ?graph=contract loads DESIGN.md's contract graph (full-size masks from the graph)
      // instead of the browser graph (low-res logits, upsampled in the worker).
      const params = new URLSearchParams(window.location.search);
      const threads = Number(params.get('threads')) || undefined;
      const quantized = params.get('quantized') === '1';
      const graph = params.get('graph') === 'contract' ? 'contract' : 'browser';
      const url = `${decoderUrl(model)}?graph=${graph}${quantized ? '&quantized=1' : ''}`;
      const r = await this.bridge.init(url, WASM_PATHS, threads);
      const n = `${r.numThreads} thread${r.numThreads > 1 ? 's' : ''}`;
      const kind = `wasm, ${graph} graph${quantized ? ', quantized' : ''}`;
      this.store.set({ decoder: { phase: 'ready', detail: `${model.name}, ${kind}, ${n}, ${Math.round(r.loadMs)} ms` } });
    } catch (e) {
      this.store.set({ decoder: { phase: 'failed', detail: errorText(e) } });
    }
  }

  // Images -------------------------------------------------------------------

  /** @param attempt how many tries to open this image failed just before (automatic retries). */
  private async openImage(imageId: number, attempt = 0): Promise<void> {
    const token = ++this.navToken;
    const stale = (): boolean => token !== this.navToken;
    if (this.openRetryTimer !== null) window.clearTimeout(this.openRetryTimer); // a newer open wins
    this.openRetryTimer = null;
    this.opening = { id: imageId, info: null };
    this.quiet.clear();
    this.active.reset();
    this.proposalClock.reset();
    const kept = this.kept.get(imageId);
    // What the prefetch (or an earlier visit) kept opens the image with no round trip when its
    // embedding is in the worker (or on its way there); the server is asked again at the
    // first quiet moment.
    const fast = kept !== undefined && kept.info.id === imageId
      && (this.readOnly || this.bridge.hasEmbedding(imageId) || this.prefetching.has(imageId));
    // Asked for at once unless the prefetch brought them; never waited for.
    const annotationsP = fast && kept.annotations ? Promise.resolve(kept.annotations) : listAnnotations(imageId);
    annotationsP.catch(() => undefined); // reported by showAnnotations
    let info: ImageInfo;
    let picture: HTMLImageElement;
    let proposalsP: Promise<Proposal[]> | null = null;
    if (fast) {
      ({ info, picture } = kept);
      if (kept.proposals) proposalsP = Promise.resolve(kept.proposals);
    } else {
      this.store.set({
        steps: [], dragBox: null, embedding: { phase: this.readOnly ? 'idle' : 'loading', detail: '' }, imageError: null,
        message: attempt ? { kind: 'info', text: `Opening image ${imageId} again (attempt ${attempt + 1})…` } : null,
        proposals: [], focusedProposal: null, editingProposal: null, proposalsStatus: 'loading', ...NO_EDIT,
      });
      try {
        info = await getImage(imageId);
        if (!stale() && info.project !== this.config.projectId) {
          // Never shown here: its masks would get this project's categories.
          this.showNoImage(`Image ${imageId} is not in this project.`,
            { text: "Open it in its project's annotate page", href: `/projects/${info.project}/annotate/?image=${imageId}` });
          return;
        }
        if (!stale() && this.opening?.id === imageId) {
          this.opening.info = info;
          // Presses that came before the info: each steps one image further from this one.
          const move = this.queuedMoves.shift();
          if (move && this.navigate(move)) return; // a newer open took over
        }
        // The embedding and the proposals download while the photo loads.
        if (!stale()) this.loadEarly(info);
        if (PROPOSALS_SETTLED.has(info.proposals_status ?? 'none')) {
          proposalsP = listProposals(imageId);
          proposalsP.catch(() => undefined); // reported by loadProposals
        }
        // The kept photo is reused only for the same pixel size (never masks of another size).
        picture = kept && kept.info.width === info.width && kept.info.height === info.height
          ? kept.picture : await loadPicture(imageFileUrl(info));
      } catch (e) {
        if (!stale()) {
          this.opening = null;
          this.queuedMoves = [];
          const gone = e instanceof ApiError && e.status === 404;
          if (gone) {
            this.showNoImage(`Cannot open image ${imageId}: ${errorText(e)}`,
              { text: "Open this project's first image", href: `/projects/${this.config.projectId}/annotate/` });
            return;
          }
          // No answer (or a server error): tried again on its own, backing off, until it opens
          // or another image is asked for; a refusal (403 by role, 4xx) is not.
          const waitMs = e instanceof ApiError ? openRetryDelay(e.status, e.message, attempt) : openRetryDelay(null, '', attempt);
          const text = waitMs === null ? `Cannot open image ${imageId}: ${errorText(e)}`
            : openRetryText(imageId, errorText(e), waitMs, attempt);
          this.store.set({ embedding: { phase: 'failed', detail: '' }, imageError: text, message: { kind: 'error', text }, proposalsStatus: 'unavailable' });
          if (waitMs !== null) {
            this.openRetryTimer = window.setTimeout(() => {
              this.openRetryTimer = null;
              if (!stale()) void this.openImage(imageId, attempt + 1);
            }, waitMs);
          }
        }
        return;
      }
      if (stale()) return;
    }
    this.opening = null;
    this.queuedMoves = [];
    // The lists are used once: by the time the page comes back here they are old.
    this.kept.set(imageId, { info, picture, annotations: null, proposals: null });
    const url = new URL(window.location.href);
    url.searchParams.set('image', String(imageId));
    window.history.replaceState(null, '', url);
    const inWorker = !this.readOnly && this.bridge.hasEmbedding(imageId);
    this.store.set({
      image: info, picture, saved: [], steps: [], dragBox: null, imageError: null, message: null,
      embedding: { phase: this.readOnly ? 'idle' : inWorker ? 'ready' : 'loading', detail: '' },
      proposals: [], focusedProposal: null, editingProposal: null, proposalsStatus: 'loading', ...NO_EDIT,
    });
    void this.showAnnotations(info, annotationsP, stale);
    void this.loadProposals(info, stale, proposalsP);
    // The lease (and the re-check of what was kept) waits for a quiet moment: after the first
    // mask, typically.
    this.work.show(info);
    if (fast) {
      const shown = kept.annotations ? new Set(kept.annotations.map((a) => a.id)) : null;
      this.quiet.add({ run: () => void this.recheck(info, shown, kept.proposals !== null, stale), idleMs: RECHECK_IDLE_MS });
    } else {
      this.quiet.add({ run: () => void this.work.enter(info), idleMs: RECHECK_IDLE_MS });
    }
    if (this.readOnly) {
      this.armPrefetch(0); // nothing decodes on this page
      return;
    }
    await this.ensureEmbedding(info, stale);
    if (!stale() && this.store.get().embedding.phase === 'ready') this.armPrefetch(PREFETCH_IDLE_MS);
  }

  /** No image is shown (it does not exist, or belongs to another project): nothing to prompt
   * or save on, the title, work bar and proposals say so, and a link leads on. */
  private showNoImage(text: string, link: { text: string; href: string }): void {
    this.opening = null;
    this.queuedMoves = [];
    this.quiet.clear();
    this.store.set({
      image: null, picture: null, saved: [], steps: [], dragBox: null, embedding: { phase: 'idle', detail: '' },
      imageError: text, message: { kind: 'error', text, link },
      proposals: [], focusedProposal: null, editingProposal: null, proposalsStatus: 'none', ...NO_EDIT,
    });
  }

  /**
   * Shows the image's saved masks when they arrive, then the outbox's unsaved ones. Masks the
   * page saved meanwhile stay; `replaces`: ids of an earlier list of this image, shown from
   * the prefetch, that this one supersedes.
   */
  private async showAnnotations(info: ImageInfo, annotationsP: Promise<Annotation[]>, stale: () => boolean,
    replaces: ReadonlySet<number> = new Set()): Promise<void> {
    let annotations: Annotation[];
    try {
      annotations = await annotationsP;
    } catch (e) {
      if (stale()) return;
      this.store.set({ message: { kind: 'error', text: `Cannot load the saved masks of image ${info.id}: ${errorText(e)}` } });
      this.showUnsaved();
      return;
    }
    if (stale()) return;
    await this.forgetLanded(annotations);
    if (stale()) return;
    const listed = annotations.filter((a) => !this.deletedAnnotations.has(a.id)).map(toSaved);
    const ids = new Set(listed.map((m) => m.annotation.id));
    const bad = listed.filter((m) => m.mask.length !== info.width * info.height).map((m) => `#${m.annotation.id}`);
    this.store.set((s) => ({
      saved: [...listed, ...s.saved.filter((m) => !m.unsaved && !ids.has(m.annotation.id) && !replaces.has(m.annotation.id))],
      ...(bad.length ? { message: { kind: 'error', text: `Cannot draw annotation ${bad.join(', ')}: its RLE does not decode to ${info.height}x${info.width}.` } } : {}),
    }));
    this.showUnsaved();
  }

  /**
   * An image opened from what the page kept, asked for again at a quiet moment: its info (work
   * state, neighbours, pre-fill status), then the lease; its masks and proposals when they
   * were shown from the prefetch.
   */
  private async recheck(kept: ImageInfo, shownAnnotations: ReadonlySet<number> | null, shownProposals: boolean,
    stale: () => boolean, attempt = 0): Promise<void> {
    const id = kept.id;
    const annotationsP = shownAnnotations ? listAnnotations(id) : null;
    annotationsP?.catch(() => undefined);
    let fresh: ImageInfo;
    try {
      fresh = await getImage(id);
    } catch (e) {
      if (stale()) return;
      if (e instanceof ApiError && e.status === 404) {
        this.kept.delete(id);
        const text = `Cannot open image ${id}: ${errorText(e)}`;
        this.store.set({ embedding: { phase: 'failed', detail: '' }, imageError: text, message: { kind: 'error', text } });
        return;
      }
      // The server is unreachable (or busy): the image shown from what the page kept stays
      // usable, and the re-check (with the lease) is tried again later, backing off.
      const waitMs = RECHECK_RETRY_MS[Math.min(attempt, RECHECK_RETRY_MS.length - 1)]!;
      this.store.set({ message: { kind: 'error', text: `${REFRESH_FAILED} ${id} from the server: ${errorText(e)}; retrying in ${Math.round(waitMs / 1000)} s.` } });
      this.quiet.add({ run: () => void this.recheck(kept, shownAnnotations, shownProposals, stale, attempt + 1), idleMs: waitMs });
      return;
    }
    if (stale()) return;
    if (fresh.id !== id || fresh.width !== kept.width || fresh.height !== kept.height) {
      // Not the photo the kept info described: open it afresh rather than make masks of
      // the wrong size.
      this.kept.delete(id);
      void this.openImage(id);
      return;
    }
    const picture = this.store.get().picture;
    if (picture) this.kept.set(id, { info: fresh, picture, annotations: null, proposals: null });
    this.store.set((s) => ({ image: fresh, ...(s.message?.text.startsWith(REFRESH_FAILED) ? { message: null } : {}) }));
    void this.work.enter(fresh);
    if (annotationsP && shownAnnotations) void this.showAnnotations(fresh, annotationsP, stale, shownAnnotations);
    if (shownProposals || fresh.proposals_status !== kept.proposals_status) void this.loadProposals(fresh, stale);
  }

  /** ?decoder=server: the decoder status line says that masks come from the server. */
  private sayServerDecoder(): void {
    const d = this.store.get().decoder;
    if (this.serverDecoder && d.phase === 'ready') this.store.set({ decoder: { phase: 'ready', detail: `server (POST /decode); worker: ${d.detail}` } });
  }

  /** The model whose embeddings this page may decode: the project's, whose decoder it loads. */
  private modelId(): string {
    const project = this.store.get().project;
    if (!project) throw new Error('the project is not loaded yet');
    return project.model_id;
  }

  /** Gets the embedding into the worker, polling while the server still computes it. */
  private async ensureEmbedding(first: ImageInfo, stale: () => boolean): Promise<void> {
    let info = first;
    const t0 = performance.now();
    let serverSays = ''; // the last 409's detail, shown while we keep polling
    for (let attempt = 0; !stale(); attempt++) {
      if (this.bridge.hasEmbedding(info.id)) {
        if (this.store.get().embedding.phase !== 'ready') this.store.set({ embedding: { phase: 'ready', detail: '' } });
        return;
      }
      const prefetch = this.prefetching.get(info.id);
      if (prefetch) {
        await prefetch; // never rejects; a failed one is retried below with the errors shown
        continue;
      }
      if (info.embedding_status === 'failed') {
        this.store.set({ embedding: { phase: 'failed', detail: `— ${info.embedding_error || 'no reason given'}` } });
        return;
      }
      try {
        if (info.embedding_status === 'ready') {
          this.store.set({ embedding: { phase: 'loading', detail: '' } });
          const { fp16 } = await getEmbedding(info, this.modelId());
          if (stale()) {
            await this.loadIntoWorker(info.id, fp16); // keep it for when the user comes back
            return;
          }
          await this.loadIntoWorker(info.id, fp16);
          continue; // -> hasEmbedding -> ready
        }
        const waited = `(${Math.round((performance.now() - t0) / 1000)} s)`;
        this.store.set({ embedding: { phase: 'pending', detail: serverSays ? `${waited} — server: ${serverSays}` : waited } });
        await sleep(POLL_MS[Math.min(attempt, POLL_MS.length - 1)]!);
        if (stale()) return;
        info = await getImage(info.id);
        this.store.set({ image: { ...info } });
      } catch (e) {
        const changedTo = modelChangedTo(e);
        if (e instanceof ModelMismatchError || changedTo !== null) {
          // Never a silent wrong mask: the decoder held here is not the embedding's model.
          const text = changedTo !== null ? `This project switched to model ${changedTo} after this page loaded the decoder of ${this.modelId()}: reload the page.` : (e as Error).message;
          if (!stale()) this.store.set({ embedding: { phase: 'failed', detail: `— ${text}` }, message: { kind: 'error', text } });
          return;
        }
        if (e instanceof ApiError && e.status === 409) {
          // Listed as ready but not servable (yet) for the current model: keep polling, and
          // show why, so a server-side mismatch does not look like a plain wait.
          serverSays = e.message;
          info = { ...info, embedding_status: 'pending' };
          continue;
        }
        if (!stale()) this.store.set({ embedding: { phase: 'failed', detail: `— ${errorText(e)}` } });
        return;
      }
    }
  }

  /** The next image's prefetch, at a quiet moment on this one. */
  private armPrefetch(idleMs: number): void {
    // Benchmark knob: ?prefetch=0 turns it off (bench/browser_decoder.py measures both).
    if (new URLSearchParams(window.location.search).get('prefetch') === '0') return;
    // The open image's next_id as the page knows it then (the re-checked info, if it came).
    this.quiet.add({ run: () => void this.prefetch(this.store.get().image?.next_id ?? null), idleMs });
  }

  /** Warms the next image: its info and decoded photo kept for openImage, its embedding into
   * the worker's LRU (not on a read-only page). */
  private prefetch(nextId: number | null): Promise<void> {
    if (nextId === null) return Promise.resolve();
    const inflight = this.prefetching.get(nextId);
    if (inflight) return inflight;
    // An image kept from an earlier visit has no lists: they are asked for again.
    if (this.kept.get(nextId)?.annotations && (this.readOnly || this.bridge.hasEmbedding(nextId))) return Promise.resolve();
    const p = this.prefetchOnce(nextId).finally(() => this.prefetching.delete(nextId));
    this.prefetching.set(nextId, p);
    return p;
  }

  private async loadIntoWorker(imageId: number, fp16: ArrayBuffer): Promise<void> {
    const r = await this.bridge.loadEmbedding(imageId, fp16);
    window.__samEmbeddingLoads.push({ imageId, convertMs: r.convertMs });
  }

  /** Starts the embedding's download into the worker as soon as the info says it is ready; its
   * errors are left to ensureEmbedding, which tries again and reports them. */
  private loadEarly(info: ImageInfo): void {
    if (this.readOnly || info.embedding_status !== 'ready' || this.bridge.hasEmbedding(info.id) || this.prefetching.has(info.id)) return;
    const p = getEmbedding(info, this.modelId())
      .then(({ fp16 }) => this.loadIntoWorker(info.id, fp16))
      .then(() => undefined, () => undefined)
      .finally(() => this.prefetching.delete(info.id));
    this.prefetching.set(info.id, p);
  }

  private async prefetchOnce(nextId: number): Promise<void> {
    try {
      const info = await getImage(nextId);
      const listsP = Promise.all([
        listAnnotations(nextId),
        PROPOSALS_SETTLED.has(info.proposals_status ?? 'none') ? listProposals(nextId) : Promise.resolve(null),
      ]);
      const keptP = Promise.all([loadPicture(imageFileUrl(info)), listsP]).then(([picture, [annotations, proposals]]) => {
        this.kept.set(nextId, { info, picture, annotations, proposals });
      });
      keptP.catch(() => undefined); // awaited below, unless the embedding failed first
      if (info.embedding_status === 'ready' && !this.readOnly && !this.bridge.hasEmbedding(nextId)) {
        const { fp16 } = await getEmbedding(info, this.modelId());
        // Sent to the worker only while no decode runs or waits (DecoderBridge).
        await this.loadIntoWorker(info.id, fp16);
      }
      await keptP;
    } catch (e) {
      // Not user-facing: opening that image retries and reports properly.
      console.warn(`prefetch of image ${nextId} failed: ${errorText(e)}`);
    }
  }

  /** "Done": the image goes to review; the queue's next image opens. */
  private async finishImage(): Promise<void> {
    const s = this.store.get();
    const image = s.image;
    if (!image || s.work.finishing || !this.mayWrite()) return;
    if ((finalMask(s)?.area ?? 0) > 0 && (s.steps.length || s.edit)) {
      this.store.set({ message: { kind: 'error', text: 'This mask is not saved: save it (Enter) or clear it (Esc) first.' } });
      return;
    }
    if (s.saved.some((m) => m.unsaved)) {
      this.store.set({ message: { kind: 'error', text: 'Some masks of this image are not on the server yet: wait until they are saved (or discard them).' } });
      return;
    }
    try {
      const next = await this.work.done(image.id);
      if (next) {
        this.history.push(image.id); // P comes back to the image just done
        this.store.set({ backHistory: this.history.size });
        await this.openImage(next.id);
        this.store.set({ message: { kind: 'info', text: `Image #${image.id} done; next from your queue: #${next.id}.` } });
      } else {
        this.store.set((now) => ({
          image: now.image ? { ...now.image, status: 'done' } : now.image,
          message: { kind: 'info', text: `Image #${image.id} done. Your queue is empty: nothing left to annotate.` },
        }));
      }
    } catch (e) {
      this.store.set({ message: { kind: 'error', text: `Done failed: ${errorText(e)}` } });
    }
  }

  /** Returns whether another image is being opened (or the press waits for one). */
  private navigate(dir: 'next' | 'prev'): boolean {
    // While an image is being opened, a press steps from it (from its info once it came).
    const opening = this.opening;
    if (opening && !opening.info) {
      this.queuedMoves.push(dir);
      return true;
    }
    const img = opening ? opening.info : this.store.get().image;
    // An annotator's N follows their work queue (the server gives next_id in queue order) and
    // P goes back the way they came; other roles walk the project's images by id.
    const target = navigationTarget(dir, img, this.history.peek());
    if (!target) {
      this.queuedMoves = [];
      const end = dir === 'next' ? 'last' : 'first';
      const text = img?.neighbour_order === 'queue' ? `This is the ${end} image of your queue.` : `This is the ${end} image.`;
      this.store.set({ message: { kind: 'info', text } });
      return false;
    }
    if (target.fromHistory) this.history.pop();
    else if (dir === 'next' && img) this.history.push(img.id);
    this.store.set({ backHistory: this.history.size });
    void this.openImage(target.id);
    return true;
  }

  // Pre-fill proposals ------------------------------------------------------

  /** Lists the image's pending proposals, polling while the worker still generates them.
   * @param listP the list already asked for (or prefetched), used when pre-fill is settled. */
  private async loadProposals(first: ImageInfo, openStale: () => boolean, listP: Promise<Proposal[]> | null = null): Promise<void> {
    const token = ++this.proposalsToken;
    const stale = (): boolean => openStale() || token !== this.proposalsToken; // a newer load took over
    let info = first;
    for (let attempt = 0; !stale(); attempt++) {
      const status = info.proposals_status ?? 'none';
      if (!PROPOSALS_SETTLED.has(status)) {
        this.store.set({ proposalsStatus: status });
        await sleep(2 * POLL_MS[Math.min(attempt, POLL_MS.length - 1)]!);
        if (stale()) return;
        try {
          info = await getImage(info.id);
        } catch {
          return; // opening the image reports its own errors
        }
        continue;
      }
      try {
        const list = await (attempt === 0 && listP ? listP : listProposals(info.id));
        if (stale()) return;
        const hw = info.width * info.height;
        const proposals = list.map(toProposalMask).filter((p) => p.mask.length === hw);
        // A list asked for again keeps the focus where it was, if that proposal is still there.
        const kept = this.store.get().focusedProposal;
        const focus = proposals.some((p) => p.proposal.id === kept) ? kept : (proposals[0]?.proposal.id ?? null);
        if (focus !== kept || kept === null) {
          this.proposalClock.reset();
          this.proposalClock.start();
        }
        this.store.set((s) => ({
          proposals, focusedProposal: focus, proposalsStatus: status,
          editingProposal: s.editingProposal !== null && !proposals.some((p) => p.proposal.id === s.editingProposal) ? null : s.editingProposal,
        }));
      } catch (e) {
        if (!stale()) this.store.set({ proposalsStatus: 'unavailable', message: { kind: 'error', text: `Cannot load the proposals: ${errorText(e)}` } });
      }
      return;
    }
  }

  private focusProposal(id: number | null): void {
    if (id === this.store.get().focusedProposal) return;
    this.proposalClock.reset();
    this.proposalClock.start();
    this.store.set({ focusedProposal: id });
  }

  private moveProposalFocus(step: 1 | -1): void {
    const s = this.store.get();
    if (!s.proposals.length) {
      this.store.set({ message: { kind: 'info', text: 'No pending proposals on this image.' } });
      return;
    }
    this.focusProposal(moveFocus(s.proposals.map((p) => p.proposal.id), s.focusedProposal, step));
  }

  /** Drops a decided proposal from the list, moves the focus on, shows its annotation. */
  private proposalDecided(id: number, annotation: Annotation | null, text: string): void {
    this.proposalClock.reset();
    this.proposalClock.start();
    this.store.set((s) => ({
      proposals: s.proposals.filter((p) => p.proposal.id !== id),
      focusedProposal: s.focusedProposal === id ? focusAfterRemoval(s.proposals.map((p) => p.proposal.id), id) : s.focusedProposal,
      editingProposal: s.editingProposal === id ? null : s.editingProposal,
      steps: s.editingProposal === id ? [] : s.steps,
      ...(s.editingProposal === id ? { ...NO_EDIT, brushOn: false } : {}),
      saved: annotation && s.image?.id === annotation.image ? [...s.saved, toSaved(annotation)] : s.saved,
      message: { kind: 'info', text },
    }));
  }

  /** Category for a decision: the proposal's own (imported ones), else the selected one. */
  private decisionCategory(p: ProposalMask): number | null | false {
    const s = this.store.get();
    if (p.proposal.category !== null) return p.proposal.category;
    if (s.categoryId === null && (s.project?.categories.length ?? 0) > 0) {
      this.store.set({ message: { kind: 'error', text: 'Pick a category first.' } });
      return false;
    }
    return s.categoryId;
  }

  private async decide(kind: 'accept' | 'reject'): Promise<void> {
    if (!this.mayWrite()) return;
    const s = this.store.get();
    if (kind === 'accept' && s.editingProposal !== null) {
      await this.save(); // A while editing = save the edited mask
      return;
    }
    const p = focusedProposal(s);
    if (!p) {
      this.store.set({ message: { kind: 'info', text: s.proposals.length ? 'Select a proposal first (Tab).' : 'No pending proposals on this image.' } });
      return;
    }
    const id = p.proposal.id;
    if (this.deciding.has(id)) return;
    const category = kind === 'accept' ? this.decisionCategory(p) : null;
    if (category === false) return;
    this.deciding.add(id);
    try {
      if (kind === 'accept') {
        const annotation = await acceptProposal(id, { category, active_ms: this.proposalClock.ms() });
        this.proposalDecided(id, annotation, `Accepted proposal #${id} as annotation #${annotation.id}.`);
      } else {
        await rejectProposal(id, this.proposalClock.ms());
        this.proposalDecided(id, null, `Rejected proposal #${id}.`);
      }
    } catch (e) {
      const image = this.store.get().image;
      // Someone else holds the image's lease: the proposal is still pending, keep showing it.
      const leaseConflict = image !== null && this.work.lostLease(image.id, e);
      if (!leaseConflict && e instanceof ApiError && (e.status === 409 || e.status === 404)) {
        // Decided (or regenerated) elsewhere meanwhile: stop showing it, say why.
        this.proposalDecided(id, null, `Proposal #${id}: ${errorText(e)}`);
        return;
      }
      this.store.set({ message: { kind: 'error', text: `${kind === 'accept' ? 'Accept' : 'Reject'} failed: ${errorText(e)}` } });
    } finally {
      this.deciding.delete(id);
    }
  }

  private acceptFocused(): Promise<void> {
    return this.decide('accept');
  }

  private rejectFocused(): Promise<void> {
    return this.decide('reject');
  }

  /** Accepts, as proposed, every pending proposal at or above the threshold. */
  private async acceptAbove(): Promise<void> {
    if (this.acceptingAbove || !this.mayWrite()) return; // a second Shift+A while the first is on its way
    this.acceptingAbove = true;
    try {
      await this.acceptAboveOnce();
    } finally {
      this.acceptingAbove = false;
    }
  }

  private async acceptAboveOnce(): Promise<void> {
    const s = this.store.get();
    const image = s.image;
    if (!image) return;
    const t = s.prefillThreshold;
    const n = s.proposals.filter((p) => (p.proposal.predicted_iou ?? 0) >= t).length;
    if (!n) {
      this.store.set({ message: { kind: 'info', text: `No pending proposal has predicted IoU ≥ ${t.toFixed(2)}.` } });
      return;
    }
    if (s.categoryId === null && (s.project?.categories.length ?? 0) > 0) {
      this.store.set({ message: { kind: 'error', text: 'Pick a category first.' } });
      return;
    }
    try {
      const made = await acceptProposalsAbove(image.id, t, s.categoryId);
      const [list, annotations] = await Promise.all([listProposals(image.id), listAnnotations(image.id)]);
      const now = this.store.get();
      if (now.image?.id !== image.id) return;
      const hw = image.width * image.height;
      const proposals = list.map(toProposalMask).filter((p) => p.mask.length === hw);
      const focus = proposals.some((p) => p.proposal.id === now.focusedProposal) ? now.focusedProposal : (proposals[0]?.proposal.id ?? null);
      this.store.set({
        proposals,
        focusedProposal: focus,
        editingProposal: proposals.some((p) => p.proposal.id === now.editingProposal) ? now.editingProposal : null,
        saved: annotations.map(toSaved),
        message: { kind: 'info', text: `Accepted ${made.length} proposal${made.length === 1 ? '' : 's'} with predicted IoU ≥ ${t.toFixed(2)}.` },
      });
    } catch (e) {
      const image = this.store.get().image;
      if (image) this.work.lostLease(image.id, e);
      this.store.set({ message: { kind: 'error', text: `Accept all failed: ${errorText(e)}` } });
    }
  }

  /**
   * Opens the focused proposal for editing: its grid point is decoded again and the
   * candidate matching the proposal's mask is chosen, so the next clicks refine that mask
   * (its low-res logits go back in as mask_input). Enter saves it as `prefill_edited`.
   */
  private editFocused(): void {
    if (!this.mayWrite()) return;
    const s = this.store.get();
    const p = focusedProposal(s);
    if (!p) {
      this.store.set({ message: { kind: 'info', text: 'Select a proposal to edit first (Tab).' } });
      return;
    }
    if (!this.checkReady()) return;
    const [x, y] = p.proposal.point_coords[0] ?? [p.proposal.bbox[0] + p.proposal.bbox[2] / 2, p.proposal.bbox[1] + p.proposal.bbox[3] / 2];
    this.active.reset();
    this.store.set({ steps: [], ...NO_EDIT, editingProposal: p.proposal.id, message: { kind: 'info', text: `Editing proposal #${p.proposal.id}: click to add or remove parts, Enter saves.` } });
    this.pushStep({ points: [{ x, y, label: 1 }], box: null }, false, null, p.mask);
  }

  // Prompts ------------------------------------------------------------------

  private addPoint(x: number, y: number, negative: boolean, timeStamp: number): void {
    if (!this.mayWrite()) {
      this.sayReadOnly();
      return;
    }
    if (this.store.get().editingAnnotation) {
      this.sayEditingSaved();
      return;
    }
    if (!this.checkReady()) return;
    const prev = currentPrompts(this.store.get());
    const prompts: Prompts = { points: [...prev.points, { x, y, label: negative ? 0 : 1 }], box: prev.box };
    // Refinement: a click added to an existing mask feeds back its low-res logits.
    this.pushStep(prompts, true, timeStamp);
  }

  private dragBox(x0: number, y0: number, x1: number, y1: number, done: boolean, timeStamp: number): void {
    if (!this.mayWrite()) {
      if (done) this.sayReadOnly();
      return;
    }
    if (!done) {
      this.store.set({ dragBox: normalizeBox(x0, y0, x1, y1) });
      return;
    }
    this.store.set({ dragBox: null });
    if (this.store.get().editingAnnotation) {
      this.sayEditingSaved();
      return;
    }
    const box = normalizeBox(x0, y0, x1, y1);
    if (box[2] - box[0] < 2 || box[3] - box[1] < 2 || !this.checkReady()) return;
    this.pushStep({ points: currentPrompts(this.store.get()).points, box }, false, timeStamp);
  }

  private get bridge(): DecoderBridge {
    return (this.decoderBridge ??= new DecoderBridge());
  }

  private get readOnly(): boolean {
    return isReadOnly(this.store.get().access);
  }

  /** False on a read-only page: every path that would change masks or send a write asks. */
  private mayWrite(): boolean {
    return !this.readOnly;
  }

  /** A prompt on a read-only page: say why nothing happens (the banner says it too). */
  private sayReadOnly(): void {
    this.store.set({ message: { kind: 'info', text: `${readOnlyText(this.store.get().access)}.` } });
  }

  private checkReady(): boolean {
    const s = this.store.get();
    if (isReady(s)) return true;
    const why =
      s.decoder.phase !== 'ready' ? `the decoder is ${s.decoder.phase}` : `the embedding is ${s.embedding.phase}`;
    this.store.set({ message: { kind: 'info', text: `Not ready yet: ${why}.` } });
    return false;
  }

  private pushStep(prompts: Prompts, refine: boolean, timeStamp: number | null, matchMask: Uint8Array | null = null): void {
    const s = this.store.get();
    if (!s.steps.length) {
      this.active.reset();
      this.active.start();
    }
    const prevShown = shownStep(s);
    const maskInput = refine && prevShown?.result ? lowResCandidate(prevShown.result.low_res_masks, prevShown.chosen) : null;
    const step: Step = { prompts, result: null, chosen: 0 };
    this.store.set({ steps: [...s.steps, step], message: null });
    void this.decodeStep(step, maskInput, timeStamp, matchMask);
  }

  /** @param matchMask when opening a proposal for editing: choose the candidate closest to it. */
  private async decodeStep(step: Step, maskInput: Float32Array | null, timeStamp: number | null, matchMask: Uint8Array | null = null): Promise<void> {
    const image = this.store.get().image;
    if (!image) return;
    const seq = ++this.clickSeq;
    const startMark = `click-to-mask:start:${seq}`;
    if (timeStamp !== null) performance.mark(startMark, { startTime: timeStamp });
    let result;
    this.quiet.busyStart(); // background work waits until after this mask
    try {
      const feeds = buildFeeds(step.prompts, image.height, image.width, maskInput);
      result = await (this.serverDecoder ?? this.bridge).decode(image.id, image.height, image.width, feeds);
    } catch (e) {
      if (!(e instanceof SupersededError)) this.store.set({ message: { kind: 'error', text: `Decoder error: ${errorText(e)}` } });
      return;
    } finally {
      this.quiet.busyEnd(); // its jobs run QUIET_AFTER_MASK_MS from now: after the mask below is painted
    }
    const s = this.store.get();
    const idx = s.steps.indexOf(step);
    if (s.image?.id !== image.id || idx < 0) return; // navigated away or undone meanwhile
    const steps = s.steps.slice();
    const chosen = matchMask
      ? bestMatchingCandidate(result.masks, result.height * result.width, matchMask).index
      : defaultCandidate(step.prompts, result.iou_predictions);
    steps[idx] = { ...step, result, chosen };
    this.store.set({ steps }); // subscribers paint the mask synchronously
    if (timeStamp !== null) {
      const endMark = `click-to-mask:end:${seq}`;
      performance.mark(endMark);
      const m = performance.measure('click-to-mask', startMark, endMark);
      window.__samPerf.push(m.duration);
      window.__samPerfDetail.push({ runMs: result.runMs, workerMs: result.totalMs, clickToMaskMs: m.duration });
      performance.clearMarks(startMark);
      performance.clearMarks(endMark);
    }
  }

  private chooseCandidate(index: number): void {
    if (!this.mayWrite()) return;
    const s = this.store.get();
    const step = currentStep(s);
    if (!step?.result) return;
    const steps = s.steps.slice(0, -1);
    steps.push({ ...step, chosen: index });
    this.store.set({ steps });
  }

  /** Key 0 / the "auto" chip: the candidate the page picks by itself for the prompts (the
   * single-mask output for several prompts, the best-scoring of 1..3 for one alone). */
  private chooseAutoCandidate(): void {
    const step = currentStep(this.store.get());
    if (step?.result) this.chooseCandidate(defaultCandidate(step.prompts, step.result.iou_predictions));
  }

  private undo(): void {
    if (!this.mayWrite()) return;
    const s = this.store.get();
    // Prompts and brush strokes are taken back in the order they were made.
    const target = undoTarget(s.edit?.strokes ?? [], s.steps.length);
    if (target === 'stroke' && s.edit && s.image) {
      const strokes = s.edit.strokes.slice(0, -1);
      this.store.set({
        edit: strokes.length ? { strokes, layer: buildLayer(strokes, s.image.width, s.image.height), active: null } : null,
        message: null,
      });
      return;
    }
    if (!s.steps.length) return;
    const steps = s.steps.slice(0, -1);
    this.store.set({ steps, message: null });
    const cur = steps[steps.length - 1];
    if (cur && !cur.result) void this.decodeStep(cur, null, null); // it was superseded before it ran
    if (!steps.length) {
      this.active.reset();
      if (s.editingProposal !== null) this.store.set({ editingProposal: null });
    }
  }

  private clear(): void {
    if (!this.mayWrite()) return;
    this.active.reset();
    this.store.set({ steps: [], dragBox: null, message: null, editingProposal: null, ...NO_EDIT, brushOn: false });
  }

  // Brush and eraser (lib/brush.ts) ---------------------------------------------

  /** B: left drags paint into the current mask, right / Shift drags erase; B again goes back
   * to prompts (the hand edits stay on top of whatever the next clicks make). */
  private toggleBrush(): void {
    if (!this.mayWrite()) return;
    const s = this.store.get();
    if (!s.brushOn && !s.steps.length && !s.editingAnnotation) {
      this.store.set({ message: { kind: 'info', text: 'The brush edits a mask: click the object first, or pick a saved mask to edit (✎ in the list).' } });
      return;
    }
    this.store.set({
      brushOn: !s.brushOn,
      message: { kind: 'info', text: s.brushOn ? 'Brush off: clicks make prompts again (the hand edits stay).'
        : 'Brush: drag paints, right-drag or Shift+drag erases, [ / ] change the size, B ends it.' },
    });
  }

  private changeBrushRadius(dir: 1 | -1): void {
    this.store.set((s) => ({ brushRadius: nextRadius(s.brushRadius, dir) }));
  }

  /** A brush stroke from the canvas (image pixels; radius in image px). */
  private stroke(phase: 'start' | 'move' | 'end', x: number, y: number, mode: StrokeMode, radius: number): void {
    if (!this.mayWrite()) return;
    const s = this.store.get();
    const img = s.image;
    if (!img) return;
    const { width: w, height: h } = img;
    if (phase === 'start') {
      if (!s.steps.length && !s.editingAnnotation) {
        this.store.set({ message: { kind: 'info', text: 'Nothing to paint on: click the object first (B turns the brush off).' } });
        return;
      }
      this.active.start();
      const e = s.edit ?? { strokes: [], layer: new Uint8Array(w * h), active: null };
      const active = { mode, radius, points: [[x, y]] as [number, number][], stepsAt: s.steps.length };
      applyStroke(e.layer, w, h, active);
      this.store.set({ edit: { ...e, active } });
      return;
    }
    const e = s.edit;
    const active = e?.active;
    if (!e || !active) return;
    const last = active.points[active.points.length - 1]!;
    if (Math.hypot(x - last[0], y - last[1]) >= 0.25) {
      active.points.push([x, y]);
      applyStroke(e.layer, w, h, active, active.points.length - 1);
    }
    this.store.set({ edit: phase === 'end' ? { strokes: [...e.strokes, active], layer: e.layer, active: null } : { ...e } });
  }

  /** A saved mask of this image (✎ in the list) becomes the current mask, with the brush on
   * and no model prompts; Enter updates the annotation (PATCH with its version). */
  private editAnnotation(id: number): void {
    if (!this.mayWrite()) return;
    const s = this.store.get();
    const m = s.saved.find((x) => x.annotation.id === id && !x.unsaved);
    if (!m || !s.image || m.mask.length !== s.image.width * s.image.height) return;
    this.active.reset();
    this.active.start();
    this.store.set({
      steps: [], dragBox: null, editingProposal: null, edit: null, brushOn: true,
      editingAnnotation: { id, version: m.annotation.version, mask: m.mask, annotation: m.annotation },
      categoryId: m.annotation.category ?? s.categoryId,
      message: { kind: 'info', text: `Editing annotation #${id}: drag paints, right-drag or Shift+drag erases, Enter saves, Esc leaves it as it was.` },
    });
  }

  private sayEditingSaved(): void {
    const ea = this.store.get().editingAnnotation;
    if (ea) this.store.set({ message: { kind: 'info', text: `Editing annotation #${ea.id} with the brush: Enter saves it, Esc leaves it as it was (then click for a new mask).` } });
  }

  /** Enter while a saved mask is edited: PATCH it with the version the edit started from; a
   * 409 (someone changed it meanwhile) keeps the edit and says so, nothing is overwritten. */
  private async saveEdit(image: ImageInfo): Promise<void> {
    const s = this.store.get();
    const ea = s.editingAnnotation;
    const m = finalMask(s);
    if (!ea || !m) return;
    const counts = s.edit ? layerCounts(s.edit.layer) : { painted: 0, erased: 0 };
    const strokes = s.edit?.strokes.length ?? 0;
    const prev = ea.annotation.prompts?.brush;
    const old = ea.annotation.prompts ?? { point_coords: [], point_labels: [], box: null };
    const body = {
      version: ea.version,
      segmentation: encodeRle(m.mask, image.height, image.width),
      category: s.categoryId ?? ea.annotation.category,
      prompts: {
        point_coords: old.point_coords ?? [], point_labels: old.point_labels ?? [], box: old.box ?? null,
        brush: { strokes: (prev?.strokes ?? 0) + strokes, painted: (prev?.painted ?? 0) + counts.painted, erased: (prev?.erased ?? 0) + counts.erased },
      },
      active_ms: this.active.ms(),
    };
    const edit = s.edit;
    this.store.set({ saving: true, message: null });
    try {
      const annotation = await updateAnnotation(ea.id, body);
      const now = this.store.get();
      if (now.image?.id !== image.id) return;
      const same = now.editingAnnotation === ea && now.edit === edit;
      if (same) this.active.reset();
      this.store.set({
        saved: now.saved.map((x) => (x.annotation.id === annotation.id ? toSaved(annotation) : x)),
        ...(same ? { ...NO_EDIT, brushOn: false } : {}),
        message: { kind: 'info', text: `Updated annotation #${annotation.id} (${annotation.area} px, version ${annotation.version}).` },
      });
    } catch (e) {
      if (e instanceof ApiError && e.status === 409 && !this.work.lostLease(image.id, e)) {
        const current = (e.body as { current?: Annotation } | null)?.current;
        if (current) this.store.set((st) => ({ saved: st.saved.map((x) => (x.annotation.id === current.id ? toSaved(current) : x)) }));
        this.store.set({ message: { kind: 'error', text: `Not saved: someone else changed annotation #${ea.id} since you opened it (now version ${current?.version ?? '?'}). Your edit is still here; Esc drops it and shows theirs.` } });
      } else {
        this.work.lostLease(image.id, e);
        this.store.set({ message: { kind: 'error', text: `Save failed: ${errorText(e)}` } });
      }
    } finally {
      if (this.store.get().saving) this.store.set({ saving: false });
    }
  }

  // Saving -------------------------------------------------------------------

  /** Enter: the mask as it is now is saved; while another save is in flight it waits for it
   * (queued, never dropped). */
  private save(): Promise<void> {
    const s = this.store.get();
    const image = s.image;
    const step = currentStep(s);
    const m = finalMask(s);
    if (!image || !this.mayWrite()) return Promise.resolve();
    const blocked = saveBlocker(s);
    if (blocked === null && s.editingAnnotation) {
      if (s.saving) return Promise.resolve();
      const run = this.saveChain.then(() => this.saveEdit(image));
      this.saveChain = run.catch(() => undefined);
      return run;
    }
    if (blocked !== null || !step?.result || !m) {
      this.store.set({ message: { kind: 'info', text: blocked ?? 'Wait for the mask to update.' } });
      return Promise.resolve();
    }
    // A project without categories saves unlabelled masks (the API allows category null).
    if (s.categoryId === null && (s.project?.categories.length ?? 0) > 0) {
      this.store.set({ message: { kind: 'error', text: 'Pick a category first.' } });
      return Promise.resolve();
    }
    if (this.savesQueued.has(step)) return Promise.resolve(); // this mask is already on its way
    const editing = s.editingProposal !== null ? (s.proposals.find((p) => p.proposal.id === s.editingProposal) ?? null) : null;
    const body = {
      category: editing?.proposal.category ?? s.categoryId,
      segmentation: encodeRle(m.mask, image.height, image.width),
      prompts: { ...promptsPayload(step.prompts), ...(m.edited && s.edit ? { brush: { strokes: s.edit.strokes.length, ...layerCounts(s.edit.layer) } } : {}) },
      predicted_iou: Math.round(m.iou * 1e4) / 1e4,
      candidate_index: m.index,
      model_id: s.model?.model_id ?? image.model_id ?? '',
      active_ms: this.active.ms(),
    };
    if (s.saving) this.store.set({ message: { kind: 'info', text: 'Saving… this mask is saved once the save before it is done.' } });
    this.savesQueued.add(step);
    const edit = s.edit;
    const run = this.saveChain.then(() => this.saveOnce(image, step, editing, body, edit)).finally(() => this.savesQueued.delete(step));
    this.saveChain = run.catch(() => undefined);
    return run;
  }

  private async saveOnce(image: ImageInfo, step: Step, editing: ProposalMask | null, body: SaveBody, edit: EditLayer | null = null): Promise<void> {
    // The saved mask's prompts (and hand edits) are cleared once it is saved, unless others
    // replaced them.
    const stillShown = (): boolean => currentStep(this.store.get()) === step && this.store.get().edit === edit;
    this.store.set({ saving: true, message: null });
    try {
      let annotation: Annotation;
      if (editing) {
        try {
          annotation = await acceptProposal(editing.proposal.id, body);
        } catch (e) {
          if (e instanceof ApiError && (e.status === 409 || e.status === 404) && !this.work.lostLease(image.id, e)) {
            // Someone decided this proposal meanwhile: keep the edited mask, saved as a manual one.
            if (this.store.get().editingProposal === editing.proposal.id) this.store.set({ editingProposal: null });
            annotation = await createAnnotation(image.id, body, SAVE_TIMEOUT_MS);
          } else throw e;
        }
      } else {
        // Kept in IndexedDB before it is sent: a failure (or no answer within SAVE_TIMEOUT_MS)
        // leaves it there, shown as unsaved and retried until the server has it (even after a reload).
        const key = newClientKey();
        const outcome = await this.outbox!.submit({ key, projectId: image.project, imageId: image.id, body });
        if (outcome.kind !== 'stored') {
          if (outcome.kind === 'rejected' && await this.labelDeleted(key, body.category, stillShown)) return;
          const shown = stillShown();
          if (shown) this.active.reset();
          this.store.set({
            saving: false,
            ...(shown ? { steps: [], ...NO_EDIT, brushOn: false } : {}),
            message: outcome.kind === 'retry'
              ? { kind: 'error', text: `Not saved on the server yet (${outcome.error}): the mask is kept in this browser and sent again automatically.`, outboxKey: key }
              : { kind: 'error', text: `Save refused: ${outcome.error}` },
          });
          return;
        }
        annotation = outcome.result;
      }
      const now = this.store.get();
      if (now.image?.id !== image.id) return;
      const shown = stillShown();
      if (shown) this.active.reset();
      if (editing) {
        this.proposalDecided(editing.proposal.id, annotation, `Saved edited proposal #${editing.proposal.id} as annotation #${annotation.id} (${annotation.origin}).`);
        return;
      }
      this.store.set({
        saving: false,
        ...(shown ? { steps: [], ...NO_EDIT, brushOn: false } : {}),
        saved: [...now.saved.filter((x) => x.annotation.id !== annotation.id), toSaved(annotation)],
        message: { kind: 'info', text: `Saved annotation #${annotation.id} (${annotation.area} px).` },
      });
    } catch (e) {
      this.work.lostLease(image.id, e);
      this.store.set({ message: { kind: 'error', text: `Save failed: ${errorText(e)}` } });
    } finally {
      if (this.store.get().saving) this.store.set({ saving: false });
    }
  }

  /** A save refused because its label was deleted meanwhile (an admin in Settings): reloads
   * the project's labels (the picker drops it), takes the refused save out of the outbox and
   * keeps the mask as the current one, so another label and Enter save it (lib/labels.ts).
   * False when the label still exists or the mask is no longer the current one. */
  private async labelDeleted(key: string, category: number | null, stillShown: () => boolean): Promise<boolean> {
    if (category === null) return false;
    const before = this.store.get().project?.categories ?? [];
    const project = await getProject(this.config.projectId).catch(() => null);
    if (!project) return false;
    this.store.set((s) => ({ project, categoryId: selectionAfterReload(s.categoryId, project.categories) }));
    const gone = deletedLabel(category, before, project.categories);
    if (!gone || !stillShown()) return false;
    await this.outbox?.discard(key);
    this.store.set({ saving: false, message: { kind: 'error', text: gone.message } });
    return true;
  }

  private async removeAnnotation(id: number): Promise<void> {
    if (!this.mayWrite()) return;
    const unsaved = this.store.get().saved.find((m) => m.annotation.id === id)?.unsaved;
    if (unsaved) {
      await this.outbox?.discard(unsaved.key);
      this.store.set({ message: { kind: 'info', text: 'Discarded the unsaved mask.' } });
      return;
    }
    try {
      await deleteAnnotation(id);
      this.deletedAnnotations.add(id);
      this.store.set((s) => ({ saved: s.saved.filter((x) => x.annotation.id !== id), message: { kind: 'info', text: `Deleted annotation #${id}.` } }));
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) {
        // Already gone on the server (deleted elsewhere): stop showing it.
        this.deletedAnnotations.add(id);
        this.store.set((s) => ({ saved: s.saved.filter((x) => x.annotation.id !== id), message: { kind: 'info', text: `Annotation #${id} was already deleted (elsewhere).` } }));
        return;
      }
      const image = this.store.get().image;
      if (image) this.work.lostLease(image.id, e);
      this.store.set({ message: { kind: 'error', text: `Delete failed: ${errorText(e)}` } });
    }
  }

  // Outbox (saves not yet on the server) --------------------------------------

  private async openOutbox(): Promise<void> {
    const store = await IdbOutboxStore.open<SaveBody>().catch(() => new MemoryOutboxStore<SaveBody>());
    this.outbox = new Outbox<SaveBody, Annotation>(store, (e) => this.sendSave(e), () => this.showUnsaved());
    await this.outbox.load().catch(() => undefined);
    window.setInterval(() => {
      if (this.outbox?.list((e) => !e.rejected && e.projectId === this.config.projectId).length) void this.outbox.flush();
    }, OUTBOX_RETRY_MS);
    window.addEventListener('online', () => void this.outbox?.flush());
    void this.outbox.flush();
  }

  private async sendSave(entry: OutboxEntry<SaveBody>): Promise<SendOutcome<Annotation>> {
    if (!this.mayWrite()) return { kind: 'retry', error: 'read-only page' };
    try {
      const annotation = await createAnnotation(entry.imageId, { ...entry.body, client_key: entry.key }, SAVE_TIMEOUT_MS);
      // Shown at once if it belongs to the open image (a retry that landed while it was open);
      // the status line's "Not saved on the server yet" about this save says it landed.
      this.store.set((s) => ({
        ...(s.image?.id === annotation.image && !s.saved.some((m) => m.annotation.id === annotation.id)
          ? { saved: [...s.saved, toSaved(annotation)] } : {}),
        ...(s.message?.outboxKey === entry.key
          ? { message: { kind: 'info' as const, text: `Saved annotation #${annotation.id} (${annotation.area} px): the mask kept in this browser reached the server.` } }
          : {}),
      }));
      return { kind: 'stored', result: annotation };
    } catch (e) {
      const status = e instanceof ApiError ? e.status : 0;
      this.work.lostLease(entry.imageId, e);
      const kind = classifyStatus(status, e instanceof ApiError ? e.message : '');
      let error = errorText(e);
      if (kind === 'retry' && (status === 401 || status === 403)) error = `${error} — log in again (in another tab); the masks stay here`;
      return { kind, error };
    }
  }

  /** Entries whose save reached the server although the page never heard back (the answer
   * was lost, then the page reloaded) are dropped: the annotation list has their key. */
  private async forgetLanded(annotations: Annotation[]): Promise<void> {
    const keys = new Set(annotations.map((a) => a.client_key).filter(Boolean));
    for (const e of this.outbox?.list((x) => keys.has(x.key)) ?? []) await this.outbox!.discard(e.key);
  }

  /** The outbox as the page shows it: unsaved masks of the open image in its list and on
   * the canvas, a count for the whole project on the status line. */
  private showUnsaved(): void {
    // A save on its first try is not "unsaved" yet: it shows once that try failed.
    const box = this.outbox;
    const entries = box?.list((e) => e.projectId === this.config.projectId && !box.isFirstAttemptInFlight(e.key)) ?? [];
    this.store.set((s) => {
      const image = s.image;
      const mine = image ? entries.filter((e) => e.imageId === image.id) : [];
      const unsaved = mine.map((e, i) => unsavedMask(e, -(i + 1)));
      const waiting = entries.filter((e) => !e.rejected);
      const last = waiting[waiting.length - 1]?.lastError ?? '';
      const rejected = entries.length - waiting.length;
      const text = !entries.length ? '' : [
        waiting.length ? `${waiting.length} unsaved mask${waiting.length > 1 ? 's' : ''} kept in this browser, retrying${last ? ` (${last})` : ''}` : '',
        rejected ? `${rejected} refused by the server` : '',
      ].filter(Boolean).join('; ');
      return {
        saved: [...s.saved.filter((m) => !m.unsaved), ...unsaved],
        unsaved: { count: entries.length, text },
      };
    });
  }

  // Keyboard -----------------------------------------------------------------

  private onKey(ev: KeyboardEvent): void {
    const t = ev.target as HTMLElement | null;
    if (t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.tagName === 'SELECT' || t.isContentEditable)) return;
    const key = ev.key;
    const cmd = keyCommand(key, { ctrl: ev.ctrlKey, meta: ev.metaKey, alt: ev.altKey });
    // A read-only page (lib/access.ts) keeps the keys that only change what is shown.
    if (cmd === null || !commandAllowed(cmd, this.store.get().access)) return;
    switch (cmd) {
      case 'undo':
        this.undo();
        break;
      case 'clear':
        this.clear();
        break;
      case 'save':
        if (t?.tagName === 'BUTTON') return; // let a focused button do its own thing
        void this.save();
        break;
      case 'candidate':
        if (key === '0') this.chooseAutoCandidate();
        else this.chooseCandidate(Number(key));
        break;
      case 'next':
        this.navigate('next');
        break;
      case 'prev':
        this.navigate('prev');
        break;
      case 'proposal-focus':
        // From the page (nothing focused) Tab walks the proposals; from a focused control it
        // moves the keyboard focus as usual, so every button stays reachable.
        if (t && t !== document.body) return;
        {
          // None left, or at the end of the list: the browser's own focus order takes over,
          // so every control is reachable from the keyboard alone.
          const st = this.store.get();
          const ids = st.proposals.map((p) => p.proposal.id);
          if (tabLeavesProposals(ids, st.focusedProposal, ev.shiftKey ? -1 : 1)) return;
        }
        this.moveProposalFocus(ev.shiftKey ? -1 : 1);
        break;
      case 'accept':
        void this.acceptFocused();
        break;
      case 'accept-above':
        void this.acceptAbove();
        break;
      case 'reject':
        void this.rejectFocused();
        break;
      case 'edit':
        this.editFocused();
        break;
      case 'shade':
        this.store.set((st) => ({ shadeUncovered: !st.shadeUncovered }));
        break;
      case 'brush':
        this.toggleBrush();
        break;
      case 'brush-smaller':
        this.changeBrushRadius(-1);
        break;
      case 'brush-larger':
        this.changeBrushRadius(1);
        break;
      case 'zoom-in':
        this.view?.zoomBy(ZOOM_STEP);
        break;
      case 'zoom-out':
        this.view?.zoomBy(1 / ZOOM_STEP);
        break;
      case 'zoom-fit':
        this.view?.fitToStage();
        break;
      case 'pan': {
        if (t && t.tagName === 'BUTTON') return; // arrows on a focused control stay the browser's
        const step = ev.shiftKey ? PAN_STEP * 4 : PAN_STEP;
        const d: Record<string, [number, number]> = {
          ArrowLeft: [step, 0], ArrowRight: [-step, 0], ArrowUp: [0, step], ArrowDown: [0, -step],
        };
        const [dx, dy] = d[key] ?? [0, 0];
        this.view?.panBy(dx, dy);
        break;
      }
    }
    ev.preventDefault();
  }
}

/** An outbox entry drawn and listed like a saved mask, with a made-up negative id. */
function unsavedMask(entry: OutboxEntry<SaveBody>, id: number): SavedMask {
  const b = entry.body;
  const [h, w] = b.segmentation.size;
  let mask: Uint8Array;
  try {
    mask = decodeRle(b.segmentation);
  } catch {
    mask = new Uint8Array(0);
  }
  let x0 = w, y0 = h, x1 = -1, y1 = -1, area = 0;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      if (!mask[y * w + x]) continue;
      area++;
      if (x < x0) x0 = x;
      if (x > x1) x1 = x;
      if (y < y0) y0 = y;
      if (y > y1) y1 = y;
    }
  }
  const annotation = {
    ...b, id, image: entry.imageId, area, bbox: area ? [x0, y0, x1 - x0 + 1, y1 - y0 + 1] : [0, 0, 0, 0],
    author: null, version: 0, created_at: '', updated_at: '',
  } as Annotation;
  return { annotation, mask, unsaved: { key: entry.key, error: entry.lastError, rejected: entry.rejected } };
}

/** A saved annotation with its mask decoded once; an undecodable RLE gives an empty mask
 * (listed, not drawn), which openImage reports on the status line. */
function toSaved(annotation: Annotation): SavedMask {
  try {
    return { annotation, mask: decodeRle(annotation.segmentation) };
  } catch {
    return { annotation, mask: new Uint8Array(0) };
  }
}

function toProposalMask(proposal: Proposal): ProposalMask {
  try {
    return { proposal, mask: decodeRle(proposal.segmentation) };
  } catch {
    return { proposal, mask: new Uint8Array(0) };
  }
}

/** The photo, loaded and decoded off the main thread (drawing it then costs no decode). */
function loadPicture(src: string): Promise<HTMLImageElement> {
  const img = new Image();
  img.decoding = 'async';
  img.src = src;
  return img.decode().then(() => img, () => Promise.reject(new Error(`cannot load image ${src}`)));
}
