/**
 * The one owner of annotate-page state. Views subscribe and draw what it says; only the
 * controller (app.ts) writes to it.
 */
import type { Annotation, Category, ImageInfo, ModelInfo, Project, Proposal } from './api';
import type { DecodeResult } from './decoder/protocol';
import { FULL_ACCESS, type Access } from './lib/access';
import { composeMask, DEFAULT_RADIUS, type Stroke } from './lib/brush';
import type { Box, Prompts } from './lib/prompts';
import { EMPTY_PROMPTS } from './lib/prompts';

/** One prompt change: the prompts after it and what the decoder made of them. */
export interface Step {
  prompts: Prompts;
  /** null while decoding, or when a newer prompt superseded this one before it ran. */
  result: DecodeResult | null;
  /** Index 0..3 into the 4 decoder outputs. */
  chosen: number;
}

export interface SavedMask {
  annotation: Annotation;
  /** Row-major H x W 0/1, decoded from the annotation's RLE once. */
  mask: Uint8Array;
  /** Set while the server does not have it yet: the save waits in the outbox
   * (lib/outbox.ts; its annotation id is negative, made up by the page). */
  unsaved?: { key: string; error: string; rejected: boolean };
}

/** Saves kept in the browser's outbox for this project (all images). */
export interface UnsavedState {
  count: number;
  /** Status-line text: why they wait ('' when count is 0). */
  text: string;
}

/** A pending pre-fill proposal with its mask decoded once. */
export interface ProposalMask {
  proposal: Proposal;
  /** Row-major H x W 0/1. */
  mask: Uint8Array;
}

/** Hand edits of the current mask (lib/brush.ts): its strokes, in order, and the edit
 * layer they make at image resolution (0 untouched, 1 painted, 2 erased). A new object on
 * every change (the layer may be the same array, grown in place during a drag). */
export interface EditLayer {
  strokes: Stroke[];
  layer: Uint8Array;
  /** The stroke being dragged (not in `strokes` yet), or null. */
  active: Stroke | null;
}

/** A saved annotation brought back as the current mask to be brushed (no model prompts). */
export interface EditingAnnotation {
  id: number;
  /** The version the edit started from (PATCH sends it: 409 if someone changed it since). */
  version: number;
  mask: Uint8Array;
  annotation: Annotation;
}

export type Phase = 'idle' | 'loading' | 'pending' | 'ready' | 'failed';

export interface Message {
  kind: 'info' | 'error';
  text: string;
  /** Where to go from here (e.g. the image's own project), shown after the text. */
  link?: { text: string; href: string };
  /** The outbox entry this message is about ("not saved yet"): replaced once that save lands. */
  outboxKey?: string;
}

export interface AnnotateState {
  /** What the user's role allows on this page (set once from the template; lib/access.ts). */
  access: Access;
  project: Project | null;
  model: ModelInfo | null;
  image: ImageInfo | null;
  /** The decoded photo, drawn on the image layer. */
  picture: HTMLImageElement | null;
  decoder: { phase: Phase; detail: string };
  embedding: { phase: Phase; detail: string };
  /** Why the current image could not be opened at all (e.g. it does not exist), or null. */
  imageError: string | null;
  steps: Step[];
  /** Rubber band while dragging a box (image pixels). */
  dragBox: Box | null;
  categoryId: number | null;
  saved: SavedMask[];
  saving: boolean;
  unsaved: UnsavedState;
  message: Message | null;
  /** Pending pre-fill proposals of the image, best predicted IoU first. */
  proposals: ProposalMask[];
  /** The proposal that A / X / E act on (its id), or null. */
  focusedProposal: number | null;
  /** The proposal whose mask the current prompts are refining (its id), or null. */
  editingProposal: number | null;
  /** Shade the pixels that no saved mask covers yet (find what is missing). */
  shadeUncovered: boolean;
  /** B: left drag paints, right / Shift drag erases instead of making prompts. */
  brushOn: boolean;
  /** Brush radius, screen px ([ / ]). */
  brushRadius: number;
  /** Hand edits on top of the current mask, or null when there are none. */
  edit: EditLayer | null;
  /** The saved annotation being edited (its mask is the base under the edit layer), or null. */
  editingAnnotation: EditingAnnotation | null;
  /** Shift+A accepts every pending proposal with predicted IoU at least this. */
  prefillThreshold: number;
  /** The image's pre-fill generation as last seen ('loading' while listing; 'unavailable'
   * when the list or the image could not be fetched). */
  proposalsStatus: 'none' | 'pending' | 'running' | 'ready' | 'failed' | 'loading' | 'unavailable';
  /** The work-queue lease on the current image, as this page knows it (work.ts). */
  work: WorkState;
  /** How many images P can go back to in this page's history (annotators; lib/history.ts). */
  backHistory: number;
}

export interface WorkState {
  /** 'mine': this page holds the lease; 'other': someone else does (saves get 409);
   *  'elsewhere': another tab or window of this user took it over (work.ts);
   *  'none': no lease (done/reviewed images, or a role that does not annotate). */
  lease: 'none' | 'mine' | 'other' | 'elsewhere';
  holder: string | null;
  until: string | null;
  /** Why there is no lease of ours (e.g. "assigned to bob"), shown in the work bar. */
  note: string | null;
  /** A "Done" request in flight. */
  finishing: boolean;
}

export const initialState: AnnotateState = {
  access: FULL_ACCESS,
  project: null,
  model: null,
  image: null,
  picture: null,
  decoder: { phase: 'idle', detail: '' },
  embedding: { phase: 'idle', detail: '' },
  imageError: null,
  steps: [],
  dragBox: null,
  categoryId: null,
  saved: [],
  saving: false,
  unsaved: { count: 0, text: '' },
  message: null,
  proposals: [],
  focusedProposal: null,
  editingProposal: null,
  shadeUncovered: false,
  brushOn: false,
  brushRadius: DEFAULT_RADIUS,
  edit: null,
  editingAnnotation: null,
  prefillThreshold: 0.95,
  proposalsStatus: 'none',
  work: { lease: 'none', holder: null, until: null, note: null, finishing: false },
  backHistory: 0,
};

export type Listener = (state: AnnotateState, prev: AnnotateState) => void;

export class Store {
  private state: AnnotateState;
  private readonly listeners = new Set<Listener>();

  constructor(state: AnnotateState = initialState) {
    this.state = state;
  }

  get(): AnnotateState {
    return this.state;
  }

  /** Shallow-merge a patch and notify subscribers synchronously (so a draw is done on return). */
  set(patch: Partial<AnnotateState> | ((s: AnnotateState) => Partial<AnnotateState>)): void {
    const prev = this.state;
    const p = typeof patch === 'function' ? patch(prev) : patch;
    this.state = { ...prev, ...p };
    for (const l of this.listeners) l(this.state, prev);
  }

  subscribe(l: Listener): () => void {
    this.listeners.add(l);
    l(this.state, initialState);
    return () => this.listeners.delete(l);
  }
}

// Selectors ----------------------------------------------------------------

export function currentStep(s: AnnotateState): Step | null {
  return s.steps.length ? s.steps[s.steps.length - 1]! : null;
}

export function currentPrompts(s: AnnotateState): Prompts {
  return currentStep(s)?.prompts ?? EMPTY_PROMPTS;
}

/** The last step that has a decoder result (what the mask layer shows). */
export function shownStep(s: AnnotateState): Step | null {
  for (let i = s.steps.length - 1; i >= 0; i--) if (s.steps[i]!.result) return s.steps[i]!;
  return null;
}

/** The chosen candidate's row-major mask (a view into the result), or null. */
export function chosenMask(s: AnnotateState): { mask: Uint8Array; index: number; iou: number; area: number } | null {
  const st = shownStep(s);
  if (!st?.result) return null;
  const r = st.result;
  const hw = r.height * r.width;
  return {
    mask: r.masks.subarray(st.chosen * hw, (st.chosen + 1) * hw),
    index: st.chosen,
    iou: r.iou_predictions[st.chosen] ?? 0,
    area: r.areas[st.chosen] ?? 0,
  };
}

const composed = new WeakMap<EditLayer, { base: Uint8Array | null; mask: Uint8Array; area: number }>();

/**
 * The mask shown and saved: the model's chosen candidate (or the saved annotation being
 * edited) under the hand edits, final = (base ∪ painted) \ erased (lib/brush.ts). `edited`
 * says whether any stroke changed it. null when there is no mask yet.
 */
export function finalMask(s: AnnotateState): { mask: Uint8Array; index: number; iou: number; area: number; edited: boolean } | null {
  const model = s.editingAnnotation ? null : chosenMask(s);
  const base = s.editingAnnotation?.mask ?? model?.mask ?? null;
  const index = model?.index ?? -1;
  const iou = model?.iou ?? 0;
  const e = s.edit;
  if (!e || (!e.strokes.length && !e.active)) {
    if (!base) return null;
    const area = model ? model.area : s.editingAnnotation!.annotation.area;
    return { mask: base, index, iou, area, edited: false };
  }
  if (!base && !s.steps.length) return null;
  let hit = composed.get(e);
  if (!hit || hit.base !== base) {
    hit = { base, ...composeMask(base, e.layer) };
    composed.set(e, hit);
  }
  return { mask: hit.mask, index, iou, area: hit.area, edited: true };
}

/**
 * Why Enter cannot save the current mask (the status line's text), or null when it can:
 * no prompt yet, the newest prompt still decoding, or a decoded mask with no pixel (a click
 * the model answered with an empty mask: the user did click, so say what to do next).
 */
export function saveBlocker(s: AnnotateState): string | null {
  const step = currentStep(s);
  if (!step && !s.editingAnnotation) return 'Nothing to save: click the object first.';
  if (step && !step.result) return 'Wait for the mask to update.';
  const m = finalMask(s);
  if (!m || m.area === 0) return 'The mask is empty (0 px): click inside the object again, or pick another candidate (1 / 2 / 3).';
  return null;
}

export function categoryById(s: AnnotateState, id: number | null): Category | null {
  return s.project?.categories.find((c) => c.id === id) ?? null;
}

export function isReady(s: AnnotateState): boolean {
  return s.decoder.phase === 'ready' && s.embedding.phase === 'ready' && s.image !== null;
}

export function focusedProposal(s: AnnotateState): ProposalMask | null {
  return s.proposals.find((p) => p.proposal.id === s.focusedProposal) ?? null;
}
