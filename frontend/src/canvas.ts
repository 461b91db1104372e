/**
 * CanvasView: draws the store onto stacked canvases at the image's own pixel size (photo,
 * saved masks, proposals, mask preview, and the prompt layer that takes the pointer),
 * placed and scaled together on the stage by the view transform (lib/view.ts: zoom and
 * pan), plus one stage-sized overlay drawn in screen pixels through the same transform
 * (points, box, label tags), so they stay crisp at any zoom. It never changes state;
 * pointer input is reported to the controller in image pixels, converted by the same
 * transform.
 */
import { isReadOnly } from './lib/access';
import {
  applyRelativeView, clampToImage, clampView, fitView, imageToScreen, pan, pinch, relativeView, screenToImage, zoomAt,
  zoomLabel, type Point, type RelativeView, type Size, type View,
} from './lib/view';
import { imageRadius, strokeMode, type StrokeMode } from './lib/brush';
import { hexToRgba, maskToRgba, maskToRgbaOutlined, type Rgba } from './lib/maskImage';
import { coverage } from './lib/proposals';
import { compactText, placeTags, type TagRequest } from './lib/tags';
import { maskStats } from './lib/rle';
import { categoryById, currentPrompts, finalMask, type AnnotateState, type ProposalMask, type SavedMask, type Store } from './store';

// The preview has one colour of its own (not the category's), so it never blends into
// saved masks or into a photo of the same hue.
const PREVIEW_FILL: Rgba = [30, 144, 255, 115];
const PREVIEW_EDGE: Rgba = [255, 255, 255, 230];
const DRAG_THRESHOLD_PX = 5;
// Proposals: outlines in one colour no category uses by default; the focused one filled.
const PROPOSAL_EDGE: Rgba = [255, 212, 0, 255];
const PROPOSAL_FOCUS_FILL: Rgba = [255, 212, 0, 80];
const PROPOSAL_FOCUS_EDGE: Rgba = [255, 255, 255, 255];
const TRANSPARENT: Rgba = [0, 0, 0, 0];
const UNCOVERED_SHADE: Rgba = [0, 0, 0, 150];
/** From this zoom up the photo is drawn with hard pixel edges. */
const PIXELATED_FROM = 4;
/** Height of a label tag on the overlay, screen px. */
const TAG_HEIGHT = 16;

export interface PointerHandlers {
  /** A click: `negative` for right button or Shift. `timeStamp` is the event's (for timing). */
  onClick(x: number, y: number, negative: boolean, timeStamp: number): void;
  onDrag(x0: number, y0: number, x1: number, y1: number, done: boolean, timeStamp: number): void;
  /** Brush mode (B): a stroke starts, goes on to (x, y) or ends there. Image pixels, not
   * clamped (a round cap may reach past the edge); `radius` in image px (the screen radius
   * divided by the zoom). */
  onStroke(phase: 'start' | 'move' | 'end', x: number, y: number, mode: StrokeMode, radius: number): void;
}

function layer(cls: string): HTMLCanvasElement {
  const c = document.createElement('canvas');
  c.className = `layer ${cls}`;
  c.width = 1;
  c.height = 1;
  return c;
}

function ctx2d(c: HTMLCanvasElement): CanvasRenderingContext2D {
  const g = c.getContext('2d', { willReadFrequently: false });
  if (!g) throw new Error('2D canvas not available');
  return g;
}

export class CanvasView {
  readonly stage: HTMLDivElement;
  private readonly frame: HTMLDivElement;
  readonly imageLayer = layer('image-layer');
  readonly savedLayer = layer('saved-layer');
  readonly proposalLayer = layer('proposal-layer');
  readonly maskLayer = layer('mask-layer');
  readonly promptLayer = layer('prompt-layer');
  /** What keeps the image from being annotatable right now, over the stage. */
  private readonly banner = document.createElement('div');
  private rgba: Uint8ClampedArray | undefined;
  private readonly tiles = new WeakMap<SavedMask, { canvas: HTMLCanvasElement; x: number; y: number; color: string }>();
  private readonly proposalTiles = new WeakMap<ProposalMask, { canvas: HTMLCanvasElement; x: number; y: number; focused: boolean } | null>();
  private width = 0;
  private height = 0;
  /** Screen-space overlay (points, box, labels); no pointer events. */
  private readonly overlay = document.createElement('canvas');
  private readonly zoomBadge = document.createElement('div');
  private view: View = { k: 1, tx: 0, ty: 0 };
  /** The zoom and centre the user left the last image at (relative: lib/view.ts), which the
   * next image opens at; null after F (and before any zoom or pan): images open fitted. */
  private kept: RelativeView | null = null;
  /** True until the user zooms or pans: a resize then fits again instead of clamping. */
  private fitted = true;
  private shownImageId: number | null = null;
  private spaceHeld = false;
  private overlayQueued = false;
  /** The pointer on the stage (screen px), for the brush cursor; null when it is off the stage. */
  private pointer: [number, number] | null = null;

  constructor(
    parent: HTMLElement,
    private readonly store: Store,
    private readonly handlers: PointerHandlers,
  ) {
    this.stage = document.createElement('div');
    this.stage.className = 'stage';
    this.frame = document.createElement('div');
    this.frame.className = 'frame';
    this.maskLayer.id = 'mask-canvas';
    this.maskLayer.dataset['maskPixels'] = '0';
    this.proposalLayer.id = 'proposal-canvas';
    this.frame.append(this.imageLayer, this.savedLayer, this.proposalLayer, this.maskLayer, this.promptLayer);
    this.banner.className = 'stage-banner';
    this.banner.id = 'stage-banner';
    this.banner.hidden = true;
    this.overlay.className = 'overlay-layer';
    this.zoomBadge.className = 'zoom-badge';
    this.zoomBadge.id = 'zoom-level';
    this.zoomBadge.title = 'Zoom: wheel, + / - or a two-finger pinch; F fits (the zoom is kept for the next image until then); Space+drag, middle drag, two fingers or arrow keys pan';
    this.stage.append(this.frame, this.overlay, this.banner, this.zoomBadge);
    parent.append(this.stage);
    new ResizeObserver(() => this.fit()).observe(this.stage);
    this.bindPointer();
    this.bindView();
    store.subscribe((s, prev) => this.render(s, prev));
  }

  private render(s: AnnotateState, prev: AnnotateState): void {
    const img = s.image;
    if (s.picture !== prev.picture || img !== prev.image) this.drawImage(s);
    if (s.saved !== prev.saved || s.project !== prev.project || s.picture !== prev.picture || s.editingAnnotation !== prev.editingAnnotation) this.drawSaved(s);
    if (s.proposals !== prev.proposals || s.focusedProposal !== prev.focusedProposal || s.editingProposal !== prev.editingProposal
      || s.shadeUncovered !== prev.shadeUncovered || s.saved !== prev.saved || s.picture !== prev.picture) {
      this.drawProposals(s);
    }
    if (s.steps !== prev.steps || s.picture !== prev.picture || s.edit !== prev.edit || s.editingAnnotation !== prev.editingAnnotation) this.drawMask(s);
    if (s.brushOn !== prev.brushOn || s.brushRadius !== prev.brushRadius) {
      this.stage.classList.toggle('brushing', s.brushOn);
      this.stage.dataset['brush'] = s.brushOn ? 'on' : 'off';
      this.stage.dataset['brushRadius'] = String(s.brushRadius);
      this.queueOverlay();
    }
    if (s.steps !== prev.steps || s.dragBox !== prev.dragBox || s.picture !== prev.picture || s.saved !== prev.saved
      || s.project !== prev.project) this.drawPrompts(s);
    if (s.decoder !== prev.decoder || s.embedding !== prev.embedding || s.imageError !== prev.imageError) this.drawBanner(s);
  }

  private drawBanner(s: AnnotateState): void {
    const d = s.decoder;
    const e = s.embedding;
    let text = '';
    let kind = 'wait';
    if (s.imageError) [text, kind] = [s.imageError, 'error'];
    else if (isReadOnly(s.access)) text = ''; // no decoder or embedding to wait for: nothing decodes here
    else if (e.phase === 'failed') [text, kind] = [`Embedding failed ${e.detail}`.trim(), 'error'];
    else if (d.phase === 'failed') [text, kind] = [`Decoder failed: ${d.detail}`, 'error'];
    else if (e.phase === 'pending') text = `Computing this image's embedding on the server… ${e.detail}`;
    else if (d.phase === 'loading' || d.phase === 'idle') text = 'Loading the decoder…';
    else if (e.phase === 'loading') text = 'Loading the embedding…';
    this.banner.hidden = !text;
    this.banner.textContent = text;
    this.banner.dataset['kind'] = kind;
  }

  private stageSize(): Size {
    return { width: this.stage.clientWidth, height: this.stage.clientHeight };
  }

  private imageSize(): Size {
    return { width: this.width, height: this.height };
  }

  /** On a resize: fit again while the user has not zoomed or panned, else keep the view
   * (clamped so the image stays on the stage). */
  private fit(): void {
    if (!this.width || !this.height) return;
    const st = this.stageSize();
    this.setView(this.fitted ? fitView(this.imageSize(), st) : clampView(this.view, this.imageSize(), st), this.fitted);
  }

  /** Fit the whole image again (key F); the next images open fitted too. */
  fitToStage(): void {
    this.kept = null;
    if (!this.width || !this.height) return;
    this.setView(fitView(this.imageSize(), this.stageSize()), true);
  }

  /** Zoom by `factor` around the stage's centre (keys + / -). */
  zoomBy(factor: number): void {
    const st = this.stageSize();
    this.zoomAround(st.width / 2, st.height / 2, factor);
  }

  /** Pan by (dx, dy) screen px (arrow keys, drags). */
  panBy(dx: number, dy: number): void {
    if (!this.width || !this.height) return;
    this.setView(pan(this.view, dx, dy, this.imageSize(), this.stageSize()), false);
  }

  private zoomAround(sx: number, sy: number, factor: number): void {
    if (!this.width || !this.height) return;
    this.setView(zoomAt(this.view, sx, sy, factor, this.imageSize(), this.stageSize()), false);
  }

  /** Places the image layers by the view and redraws the screen-space overlay. */
  private setView(v: View, fitted: boolean): void {
    this.view = v;
    this.fitted = fitted;
    // The user's zoom, kept for the next image (see drawImage).
    if (!fitted && this.shownImageId !== null) this.kept = relativeView(v, this.imageSize(), this.stageSize());
    const f = this.frame.style;
    f.left = `${v.tx}px`;
    f.top = `${v.ty}px`;
    f.width = `${this.width * v.k}px`;
    f.height = `${this.height * v.k}px`;
    this.frame.classList.toggle('pixelated', v.k >= PIXELATED_FROM);
    this.zoomBadge.textContent = zoomLabel(v.k);
    const ds = this.zoomBadge.dataset;
    ds['k'] = String(v.k);
    ds['tx'] = String(v.tx);
    ds['ty'] = String(v.ty);
    ds['fitted'] = fitted ? '1' : '0';
    ds['kept'] = this.kept ? '1' : '0';
    this.queueOverlay();
  }

  private queueOverlay(): void {
    if (this.overlayQueued) return;
    this.overlayQueued = true;
    requestAnimationFrame(() => {
      this.overlayQueued = false;
      this.drawPrompts(this.store.get());
    });
  }

  private drawImage(s: AnnotateState): void {
    const img = s.image;
    const w = img?.width ?? 1;
    const h = img?.height ?? 1;
    if (w !== this.width || h !== this.height) {
      this.width = w;
      this.height = h;
      for (const c of [this.imageLayer, this.savedLayer, this.proposalLayer, this.maskLayer, this.promptLayer]) {
        c.width = w;
        c.height = h;
      }
      this.rgba = undefined;
    }
    const id = img ? img.id : null;
    if (id !== this.shownImageId || this.fitted) {
      // A new image opens at the zoom the user left the previous one at (relative to fit,
      // centred on the same relative point: N / P through a series of similar photos), or
      // fitted if they had not zoomed or pressed F since; the same one keeps the user's view.
      const changed = id !== this.shownImageId;
      this.shownImageId = id;
      if (changed && img && this.kept) this.setView(applyRelativeView(this.kept, this.imageSize(), this.stageSize()), false);
      else {
        this.fitted = true;
        this.fit();
      }
    }
    const g = ctx2d(this.imageLayer);
    g.clearRect(0, 0, w, h);
    if (s.picture) g.drawImage(s.picture, 0, 0, w, h);
    this.maskLayer.dataset['imageId'] = img ? String(img.id) : '';
    this.maskLayer.dataset['width'] = String(w);
    this.maskLayer.dataset['height'] = String(h);
  }

  private drawSaved(s: AnnotateState): void {
    const g = ctx2d(this.savedLayer);
    g.clearRect(0, 0, this.savedLayer.width, this.savedLayer.height);
    if (!s.image || !s.saved.length) {
      this.savedLayer.dataset['count'] = '0';
      return;
    }
    const { width: w, height: h } = s.image;
    for (const m of s.saved) {
      // The mask being edited is shown by the preview (with its hand edits) instead.
      if (m.mask.length !== w * h || m.annotation.id === s.editingAnnotation?.id) continue;
      const color = categoryById(s, m.annotation.category)?.color ?? '#ff9800';
      const tile = this.savedTile(m, w, h, color);
      if (tile) g.drawImage(tile.canvas, tile.x, tile.y);
    }
    this.savedLayer.dataset['count'] = String(s.saved.length);
  }

  /**
   * A saved mask painted once into a canvas the size of its bounding box, cached per
   * (mask, colour): re-compositing after a save or a resize costs a drawImage per mask
   * instead of a pass over every pixel of the image per mask.
   */
  private savedTile(m: SavedMask, w: number, h: number, color: string): { canvas: HTMLCanvasElement; x: number; y: number } | null {
    const hit = this.tiles.get(m);
    if (hit && hit.color === color) return hit;
    const { area, bbox } = maskStats(m.mask, h, w);
    if (!area) return null;
    const [x, y, bw, bh] = bbox;
    const crop = new Uint8Array(bw * bh);
    for (let r = 0; r < bh; r++) crop.set(m.mask.subarray((y + r) * w + x, (y + r) * w + x + bw), r * bw);
    const canvas = document.createElement('canvas');
    canvas.width = bw;
    canvas.height = bh;
    const rgba = maskToRgba(crop, hexToRgba(color, 0.45));
    ctx2d(canvas).putImageData(new ImageData(rgba as Uint8ClampedArray<ArrayBuffer>, bw, bh), 0, 0);
    const tile = { canvas, x, y, color };
    this.tiles.set(m, tile);
    return tile;
  }

  /**
   * Pending proposals as outlines (the focused one filled), over an optional shade on every
   * pixel that no saved mask covers yet. The proposal being edited is left out: the mask
   * preview shows it.
   */
  private drawProposals(s: AnnotateState): void {
    const g = ctx2d(this.proposalLayer);
    const w = this.proposalLayer.width;
    const h = this.proposalLayer.height;
    g.clearRect(0, 0, w, h);
    const ds = this.proposalLayer.dataset;
    ds['shaded'] = '0';
    if (!s.image || s.image.width !== w || s.image.height !== h) {
      ds['count'] = '0';
      return;
    }
    if (s.shadeUncovered) {
      const covered = coverage(s.saved.map((m) => m.mask), w * h);
      for (let i = 0; i < covered.length; i++) covered[i] = covered[i] ? 0 : 1;
      g.putImageData(new ImageData(maskToRgba(covered, UNCOVERED_SHADE) as Uint8ClampedArray<ArrayBuffer>, w, h), 0, 0);
      let uncovered = 0;
      for (let i = 0; i < covered.length; i++) uncovered += covered[i]!;
      ds['shaded'] = String(uncovered);
    }
    let drawn = 0;
    for (const p of s.proposals) {
      if (p.proposal.id === s.editingProposal || p.mask.length !== w * h) continue;
      const tile = this.proposalTile(p, w, h, p.proposal.id === s.focusedProposal);
      if (tile) {
        g.drawImage(tile.canvas, tile.x, tile.y);
        drawn++;
      }
    }
    ds['count'] = String(drawn);
    ds['focused'] = s.focusedProposal === null ? '' : String(s.focusedProposal);
  }

  private proposalTile(p: ProposalMask, w: number, h: number, focused: boolean): { canvas: HTMLCanvasElement; x: number; y: number } | null {
    const hit = this.proposalTiles.get(p);
    if (hit && hit.focused === focused) return hit;
    const { area, bbox } = maskStats(p.mask, h, w);
    if (!area) return null;
    const [x, y, bw, bh] = bbox;
    const crop = new Uint8Array(bw * bh);
    for (let r = 0; r < bh; r++) crop.set(p.mask.subarray((y + r) * w + x, (y + r) * w + x + bw), r * bw);
    const canvas = document.createElement('canvas');
    canvas.width = bw;
    canvas.height = bh;
    const rgba = focused
      ? maskToRgbaOutlined(crop, bw, bh, PROPOSAL_FOCUS_FILL, PROPOSAL_FOCUS_EDGE)
      : maskToRgbaOutlined(crop, bw, bh, TRANSPARENT, PROPOSAL_EDGE);
    ctx2d(canvas).putImageData(new ImageData(rgba as Uint8ClampedArray<ArrayBuffer>, bw, bh), 0, 0);
    const tile = { canvas, x, y, focused };
    this.proposalTiles.set(p, tile);
    return tile;
  }

  private drawMask(s: AnnotateState): void {
    const g = ctx2d(this.maskLayer);
    const chosen = finalMask(s);
    const w = this.maskLayer.width;
    const h = this.maskLayer.height;
    const ds = this.maskLayer.dataset;
    if (!chosen || chosen.mask.length !== w * h) {
      g.clearRect(0, 0, w, h);
      ds['maskPixels'] = '0';
      ds['candidate'] = '';
      ds['iou'] = '';
      ds['edited'] = '0';
      return;
    }
    this.rgba = maskToRgbaOutlined(chosen.mask, w, h, PREVIEW_FILL, PREVIEW_EDGE, this.rgba);
    g.putImageData(new ImageData(this.rgba as Uint8ClampedArray<ArrayBuffer>, w, h), 0, 0);
    ds['maskPixels'] = String(chosen.area);
    ds['candidate'] = String(chosen.index);
    ds['iou'] = chosen.iou.toFixed(4);
    ds['edited'] = chosen.edited ? '1' : '0';
  }

  /**
   * The screen-space overlay: label tags of the saved masks, the box (or the rubber band
   * being dragged) and the points, placed through the view transform at a fixed size in
   * screen px whatever the zoom.
   */
  private drawPrompts(s: AnnotateState): void {
    const c = this.overlay;
    const dpr = window.devicePixelRatio || 1;
    const sw = this.stage.clientWidth;
    const sh = this.stage.clientHeight;
    const cw = Math.max(1, Math.round(sw * dpr));
    const ch = Math.max(1, Math.round(sh * dpr));
    if (c.width !== cw || c.height !== ch) {
      c.width = cw;
      c.height = ch;
    }
    const g = ctx2d(c);
    g.setTransform(1, 0, 0, 1, 0, 0);
    g.clearRect(0, 0, c.width, c.height);
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    const p = currentPrompts(s);
    this.promptLayer.dataset['points'] = String(p.points.length);
    if (!s.image || !this.width) {
      this.overlay.dataset['tags'] = '[]';
      return;
    }
    const v = this.view;
    // Labels on top of all fills, at the top-left corner of each mask's box unless another
    // tag is there: lib/tags.ts moves it (a leader line back to the corner), shortens it, or
    // leaves it out, so tags never overlap.
    g.font = '600 12px system-ui, sans-serif';
    g.textBaseline = 'top';
    const tags = s.saved.map((m) => {
      const cat = categoryById(s, m.annotation.category);
      const text = cat?.name ?? (m.annotation.category === null ? 'unlabelled' : `category ${m.annotation.category}`);
      const short = compactText(text);
      // bbox is in edge coordinates (its corner is a pixel's corner).
      const [x, y, bw, bh] = m.annotation.bbox ?? [0, 0, 0, 0];
      const req: TagRequest = { box: { x: v.tx + x * v.k, y: v.ty + y * v.k, w: bw * v.k, h: bh * v.k }, w: g.measureText(text).width + 8, h: TAG_HEIGHT };
      if (short !== text) req.compactW = g.measureText(short).width + 8;
      return { text, short, color: cat?.color ?? '#ff9800', req, id: m.annotation.id };
    });
    const placed = placeTags(tags.map((t) => t.req), { width: sw, height: sh });
    const shown: Array<{ id: number; x: number; y: number; w: number; h: number; moved: boolean; compact: boolean }> = [];
    tags.forEach((t, i) => {
      const pl = placed[i];
      if (!pl) return;
      if (pl.moved) {
        // The leader: from the tag's nearest point to the mask's corner, with a dot there.
        const [ax, ay] = pl.anchor;
        const nx = Math.min(Math.max(ax, pl.x), pl.x + pl.w);
        const ny = Math.min(Math.max(ay, pl.y), pl.y + pl.h);
        g.strokeStyle = t.color;
        g.lineWidth = 1.5;
        g.beginPath();
        g.moveTo(nx, ny);
        g.lineTo(ax, ay);
        g.stroke();
        g.beginPath();
        g.arc(ax, ay, 2.5, 0, Math.PI * 2);
        g.fillStyle = t.color;
        g.fill();
      }
      g.fillStyle = t.color;
      g.fillRect(pl.x, pl.y, pl.w, pl.h);
      g.fillStyle = '#fff';
      g.fillText(pl.compact ? t.short : t.text, pl.x + 4, pl.y + 2);
      shown.push({ id: t.id, x: pl.x, y: pl.y, w: pl.w, h: pl.h, moved: pl.moved, compact: pl.compact });
    });
    // For tests and tools: where the tags are (screen px), one entry per tag drawn.
    this.overlay.dataset['tags'] = JSON.stringify(shown);
    const box = s.dragBox ?? p.box;
    if (box) {
      // Box corners are image pixel coordinates, like points.
      const [x0, y0] = imageToScreen(v, box[0], box[1]);
      const [x1, y1] = imageToScreen(v, box[2], box[3]);
      g.lineWidth = 2;
      g.setLineDash(s.dragBox ? [6, 4] : []);
      g.strokeStyle = '#ffeb3b';
      g.strokeRect(x0, y0, x1 - x0, y1 - y0);
      g.setLineDash([]);
    }
    for (const pt of p.points) {
      const [x, y] = imageToScreen(v, pt.x, pt.y);
      g.beginPath();
      g.arc(x, y, 6, 0, Math.PI * 2);
      g.fillStyle = pt.label === 1 ? '#2ecc40' : '#ff4136';
      g.fill();
      g.lineWidth = 2;
      g.strokeStyle = '#fff';
      g.stroke();
      // + / − glyph so the sign does not rely on colour alone.
      g.beginPath();
      g.moveTo(x - 3, y);
      g.lineTo(x + 3, y);
      if (pt.label === 1) {
        g.moveTo(x, y - 3);
        g.lineTo(x, y + 3);
      }
      g.stroke();
    }
    // The brush cursor: a circle of the brush's radius (screen px) around the pointer.
    if (s.brushOn && this.pointer) {
      const [px, py] = this.pointer;
      g.beginPath();
      g.arc(px, py, s.brushRadius, 0, Math.PI * 2);
      g.lineWidth = 3;
      g.strokeStyle = 'rgba(0,0,0,0.6)';
      g.stroke();
      g.lineWidth = 1.5;
      g.strokeStyle = '#fff';
      g.stroke();
    }
  }

  /** Pointer -> screen px on the stage. */
  private toStage(ev: { clientX: number; clientY: number }): [number, number] {
    const r = this.stage.getBoundingClientRect();
    return [ev.clientX - r.left, ev.clientY - r.top];
  }

  /** Pointer -> image pixel through the view transform, clamped to the image. */
  private toImage(ev: PointerEvent): [number, number] {
    const [sx, sy] = this.toStage(ev);
    const [x, y] = screenToImage(this.view, sx, sy);
    return clampToImage(x, y, this.imageSize());
  }

  /**
   * Zoom and pan: the wheel (and a trackpad pinch, a wheel event with ctrlKey) zooms around
   * the cursor; Space + left drag or a middle-button drag pans. A pan starts in the capture
   * phase on the stage and stops the event there, so the prompt layer never sees it: panning
   * makes no prompt.
   */
  private bindView(): void {
    const stage = this.stage;
    stage.addEventListener('wheel', (ev) => {
      if (!this.width) return;
      ev.preventDefault();
      const unit = ev.deltaMode === 1 ? 16 : ev.deltaMode === 2 ? stage.clientHeight : 1;
      const dy = ev.deltaY * unit;
      // A pinch sends small deltas with ctrlKey: let it zoom faster per unit.
      const factor = Math.pow(ev.ctrlKey ? 1.01 : 1.0015, -dy);
      const [sx, sy] = this.toStage(ev);
      this.zoomAround(sx, sy, Math.min(4, Math.max(0.25, factor)));
    }, { passive: false });
    let panning: { id: number; x: number; y: number } | null = null;
    stage.addEventListener('pointerdown', (ev) => {
      if (!(ev.button === 1 || (ev.button === 0 && this.spaceHeld))) return;
      ev.preventDefault();
      ev.stopPropagation();
      stage.setPointerCapture(ev.pointerId);
      panning = { id: ev.pointerId, x: ev.clientX, y: ev.clientY };
      stage.classList.add('panning');
    }, { capture: true });
    // No autoscroll on a middle-button press.
    stage.addEventListener('mousedown', (ev) => { if (ev.button === 1) ev.preventDefault(); });
    stage.addEventListener('pointermove', (ev) => {
      if (!panning || ev.pointerId !== panning.id) return;
      const dx = ev.clientX - panning.x;
      const dy = ev.clientY - panning.y;
      panning.x = ev.clientX;
      panning.y = ev.clientY;
      ev.stopPropagation();
      this.panBy(dx, dy);
    }, { capture: true });
    const end = (ev: PointerEvent): void => {
      if (!panning || ev.pointerId !== panning.id) return;
      panning = null;
      if (stage.hasPointerCapture(ev.pointerId)) stage.releasePointerCapture(ev.pointerId);
      stage.classList.remove('panning');
      ev.stopPropagation();
    };
    stage.addEventListener('pointerup', end, { capture: true });
    stage.addEventListener('pointercancel', end, { capture: true });
    this.bindTouch();
    const typing = (t: EventTarget | null): boolean => {
      const e = t as HTMLElement | null;
      return !!e && (e.tagName === 'INPUT' || e.tagName === 'TEXTAREA' || e.tagName === 'SELECT' || e.isContentEditable);
    };
    // Space on a focused control stays that control's (a button press, a checkbox).
    const control = (t: EventTarget | null): boolean => {
      const e = t as HTMLElement | null;
      return typing(t) || (!!e && (e.tagName === 'BUTTON' || e.tagName === 'A'));
    };
    window.addEventListener('keydown', (ev) => {
      if (ev.key !== ' ' || control(ev.target)) return;
      ev.preventDefault(); // no page scroll, no press of a focused button
      this.spaceHeld = true;
      stage.classList.add('pan-ready');
    });
    const release = (): void => {
      this.spaceHeld = false;
      stage.classList.remove('pan-ready');
    };
    window.addEventListener('keyup', (ev) => {
      if (ev.key !== ' ') return;
      if (!control(ev.target)) ev.preventDefault();
      release();
    });
    window.addEventListener('blur', release);
  }

  /**
   * Touch screens: one finger makes a point (or drags a box) as the mouse does; a second
   * finger down turns it into a gesture: pinching zooms around the pinch centre, both
   * fingers moving pan (lib/view.ts pinch). The gesture lasts until every finger is up;
   * the first finger's pending point is dropped, and no finger of it makes a prompt.
   * Handled in the capture phase on the stage, before the prompt layer sees the events.
   */
  private bindTouch(): void {
    const stage = this.stage;
    const fingers = new Map<number, [number, number]>();
    let gesture = false;
    const two = (): [Point, Point] | null => {
      const it = fingers.values();
      const a = it.next().value;
      const b = it.next().value;
      return a && b ? [a, b] : null;
    };
    stage.addEventListener('pointerdown', (ev) => {
      if (ev.pointerType !== 'touch') return;
      fingers.set(ev.pointerId, this.toStage(ev));
      if (fingers.size < 2 && !gesture) return; // one finger: the prompt layer's
      gesture = true;
      this.cancelPrompt();
      ev.preventDefault();
      ev.stopPropagation();
      stage.classList.add('gesture');
    }, { capture: true });
    stage.addEventListener('pointermove', (ev) => {
      if (ev.pointerType !== 'touch' || !fingers.has(ev.pointerId)) return;
      const before = two();
      fingers.set(ev.pointerId, this.toStage(ev));
      if (!gesture) return;
      ev.stopPropagation();
      const after = two();
      if (!before || !after || !this.width) return;
      this.setView(pinch(this.view, before[0], before[1], after[0], after[1], this.imageSize(), this.stageSize()), false);
    }, { capture: true });
    const lift = (ev: PointerEvent): void => {
      if (ev.pointerType !== 'touch' || !fingers.delete(ev.pointerId)) return;
      if (!gesture) return;
      ev.stopPropagation();
      if (fingers.size === 0) {
        gesture = false;
        stage.classList.remove('gesture');
      }
    };
    stage.addEventListener('pointerup', lift, { capture: true });
    stage.addEventListener('pointercancel', lift, { capture: true });
    this.stage.dataset['touch'] = 'pinch-pan';
  }

  /** Drops the point or box the pointer now down on the prompt layer would make (set by
   * bindPointer; a second finger turned the touch into a gesture). */
  private cancelPrompt: () => void = () => {};

  /** Pointer -> image pixel through the view transform, not clamped (brush strokes). */
  private toImageFree(ev: PointerEvent): [number, number] {
    const [sx, sy] = this.toStage(ev);
    return screenToImage(this.view, sx, sy);
  }

  private bindPointer(): void {
    const el = this.promptLayer;
    let down: { x: number; y: number; cx: number; cy: number; button: number; shift: boolean; dragging: boolean } | null = null;
    /** The brush stroke being dragged (brush mode): its mode. */
    let stroke: { mode: StrokeMode; id: number; x: number; y: number } | null = null;
    this.stage.addEventListener('pointermove', (ev) => {
      this.pointer = this.toStage(ev);
      if (this.store.get().brushOn) this.queueOverlay();
    });
    this.stage.addEventListener('pointerleave', () => {
      this.pointer = null;
      if (this.store.get().brushOn) this.queueOverlay();
    });
    el.addEventListener('contextmenu', (ev) => ev.preventDefault());
    el.addEventListener('pointerdown', (ev) => {
      if (ev.button !== 0 && ev.button !== 2) return;
      ev.preventDefault();
      el.setPointerCapture(ev.pointerId);
      const st = this.store.get();
      if (st.brushOn) {
        const [x, y] = this.toImageFree(ev);
        stroke = { mode: strokeMode(ev.button, ev.shiftKey), id: ev.pointerId, x, y };
        this.handlers.onStroke('start', x, y, stroke.mode, imageRadius(st.brushRadius, this.view.k));
        return;
      }
      const [x, y] = this.toImage(ev);
      down = { x, y, cx: ev.clientX, cy: ev.clientY, button: ev.button, shift: ev.shiftKey, dragging: false };
    });
    el.addEventListener('pointermove', (ev) => {
      if (stroke && ev.pointerId === stroke.id) {
        const [x, y] = this.toImageFree(ev);
        stroke.x = x;
        stroke.y = y;
        this.handlers.onStroke('move', x, y, stroke.mode, imageRadius(this.store.get().brushRadius, this.view.k));
        return;
      }
      if (!down || down.button !== 0) return;
      if (!down.dragging && Math.hypot(ev.clientX - down.cx, ev.clientY - down.cy) < DRAG_THRESHOLD_PX) return;
      down.dragging = true;
      const [x, y] = this.toImage(ev);
      this.handlers.onDrag(down.x, down.y, x, y, false, ev.timeStamp);
    });
    const finish = (ev: PointerEvent, cancelled: boolean): void => {
      if (stroke && ev.pointerId === stroke.id) {
        const mode = stroke.mode;
        stroke = null;
        if (el.hasPointerCapture(ev.pointerId)) el.releasePointerCapture(ev.pointerId);
        const [x, y] = this.toImageFree(ev);
        // A cancelled stroke (a second finger: a gesture) still ends; Ctrl+Z takes it back.
        this.handlers.onStroke('end', x, y, mode, imageRadius(this.store.get().brushRadius, this.view.k));
        return;
      }
      if (!down) return;
      const d = down;
      down = null;
      if (el.hasPointerCapture(ev.pointerId)) el.releasePointerCapture(ev.pointerId);
      if (cancelled) {
        if (d.dragging) this.handlers.onDrag(d.x, d.y, d.x, d.y, true, ev.timeStamp);
        return;
      }
      const [x, y] = this.toImage(ev);
      if (d.dragging) this.handlers.onDrag(d.x, d.y, x, y, true, ev.timeStamp);
      else this.handlers.onClick(d.x, d.y, d.button === 2 || d.shift || ev.shiftKey, ev.timeStamp);
    };
    this.cancelPrompt = () => {
      // A stroke under way ends where it got to (Ctrl+Z takes it back).
      const st = stroke;
      stroke = null;
      if (st) this.handlers.onStroke('end', st.x, st.y, st.mode, imageRadius(this.store.get().brushRadius, this.view.k));
      const d = down;
      down = null;
      if (d?.dragging) this.handlers.onDrag(d.x, d.y, d.x, d.y, true, performance.now());
    };
    el.addEventListener('pointerup', (ev) => finish(ev, false));
    el.addEventListener('pointercancel', (ev) => finish(ev, true));
  }
}
