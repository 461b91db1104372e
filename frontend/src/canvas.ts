/**
 * CanvasView: draws the store onto four stacked canvases at the image's own pixel size
 * (photo, saved masks, mask preview, prompts), scaled together by CSS to fit the stage.
 * It never changes state; pointer input is reported to the controller in image pixels.
 */
import { isReadOnly } from './lib/access';
import { clientToImage } from './lib/coords';
import { hexToRgba, maskToRgba, maskToRgbaOutlined, type Rgba } from './lib/maskImage';
import { coverage } from './lib/proposals';
import { maskStats } from './lib/rle';
import { categoryById, chosenMask, currentPrompts, type AnnotateState, type ProposalMask, type SavedMask, type Store } from './store';

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

export interface PointerHandlers {
  /** A click: `negative` for right button or Shift. `timeStamp` is the event's (for timing). */
  onClick(x: number, y: number, negative: boolean, timeStamp: number): void;
  onDrag(x0: number, y0: number, x1: number, y1: number, done: boolean, timeStamp: number): void;
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
    this.stage.append(this.frame, this.banner);
    parent.append(this.stage);
    new ResizeObserver(() => this.fit()).observe(this.stage);
    this.bindPointer();
    store.subscribe((s, prev) => this.render(s, prev));
  }

  private render(s: AnnotateState, prev: AnnotateState): void {
    const img = s.image;
    if (s.picture !== prev.picture || img !== prev.image) this.drawImage(s);
    if (s.saved !== prev.saved || s.project !== prev.project || s.picture !== prev.picture) this.drawSaved(s);
    if (s.proposals !== prev.proposals || s.focusedProposal !== prev.focusedProposal || s.editingProposal !== prev.editingProposal
      || s.shadeUncovered !== prev.shadeUncovered || s.saved !== prev.saved || s.picture !== prev.picture) {
      this.drawProposals(s);
    }
    if (s.steps !== prev.steps || s.picture !== prev.picture) this.drawMask(s);
    if (s.steps !== prev.steps || s.dragBox !== prev.dragBox || s.picture !== prev.picture) this.drawPrompts(s);
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

  /** Display scale (CSS px per image px). */
  private scale(): number {
    const r = this.frame.getBoundingClientRect();
    return this.width ? r.width / this.width || 1 : 1;
  }

  private fit(): void {
    if (!this.width || !this.height) return;
    const pad = 16;
    const aw = Math.max(50, this.stage.clientWidth - pad * 2);
    const ah = Math.max(50, this.stage.clientHeight - pad * 2);
    const k = Math.min(aw / this.width, ah / this.height);
    this.frame.style.width = `${Math.floor(this.width * k)}px`;
    this.frame.style.height = `${Math.floor(this.height * k)}px`;
    this.drawPrompts(this.store.get());
    this.drawSaved(this.store.get());
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
      this.fit();
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
      if (m.mask.length !== w * h) continue;
      const color = categoryById(s, m.annotation.category)?.color ?? '#ff9800';
      const tile = this.savedTile(m, w, h, color);
      if (tile) g.drawImage(tile.canvas, tile.x, tile.y);
    }
    // Labels on top of all fills, sized in screen pixels.
    const k = 1 / this.scale();
    g.font = `600 ${Math.round(12 * k)}px system-ui, sans-serif`;
    g.textBaseline = 'top';
    for (const m of s.saved) {
      const cat = categoryById(s, m.annotation.category);
      const [x, y] = m.annotation.bbox ?? [0, 0];
      const text = cat?.name ?? (m.annotation.category === null ? 'unlabelled' : `category ${m.annotation.category}`);
      const tw = g.measureText(text).width;
      g.fillStyle = cat?.color ?? '#ff9800';
      g.fillRect(x, y, tw + 8 * k, 16 * k);
      g.fillStyle = '#fff';
      g.fillText(text, x + 4 * k, y + 2 * k);
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
    const chosen = chosenMask(s);
    const w = this.maskLayer.width;
    const h = this.maskLayer.height;
    const ds = this.maskLayer.dataset;
    if (!chosen || chosen.mask.length !== w * h) {
      g.clearRect(0, 0, w, h);
      ds['maskPixels'] = '0';
      ds['candidate'] = '';
      ds['iou'] = '';
      return;
    }
    this.rgba = maskToRgbaOutlined(chosen.mask, w, h, PREVIEW_FILL, PREVIEW_EDGE, this.rgba);
    g.putImageData(new ImageData(this.rgba as Uint8ClampedArray<ArrayBuffer>, w, h), 0, 0);
    ds['maskPixels'] = String(chosen.area);
    ds['candidate'] = String(chosen.index);
    ds['iou'] = chosen.iou.toFixed(4);
  }

  private drawPrompts(s: AnnotateState): void {
    const g = ctx2d(this.promptLayer);
    g.clearRect(0, 0, this.promptLayer.width, this.promptLayer.height);
    const k = 1 / this.scale();
    const p = currentPrompts(s);
    const box = s.dragBox ?? p.box;
    if (box) {
      g.lineWidth = 2 * k;
      g.setLineDash(s.dragBox ? [6 * k, 4 * k] : []);
      g.strokeStyle = '#ffeb3b';
      g.strokeRect(box[0], box[1], box[2] - box[0], box[3] - box[1]);
      g.setLineDash([]);
    }
    for (const pt of p.points) {
      g.beginPath();
      g.arc(pt.x, pt.y, 6 * k, 0, Math.PI * 2);
      g.fillStyle = pt.label === 1 ? '#2ecc40' : '#ff4136';
      g.fill();
      g.lineWidth = 2 * k;
      g.strokeStyle = '#fff';
      g.stroke();
      // + / − glyph so the sign does not rely on colour alone.
      g.beginPath();
      g.moveTo(pt.x - 3 * k, pt.y);
      g.lineTo(pt.x + 3 * k, pt.y);
      if (pt.label === 1) {
        g.moveTo(pt.x, pt.y - 3 * k);
        g.lineTo(pt.x, pt.y + 3 * k);
      }
      g.stroke();
    }
    this.promptLayer.dataset['points'] = String(p.points.length);
  }

  private toImage(ev: PointerEvent): [number, number] {
    return clientToImage(ev.clientX, ev.clientY, this.promptLayer.getBoundingClientRect(), this.width, this.height);
  }

  private bindPointer(): void {
    const el = this.promptLayer;
    let down: { x: number; y: number; cx: number; cy: number; button: number; shift: boolean; dragging: boolean } | null = null;
    el.addEventListener('contextmenu', (ev) => ev.preventDefault());
    el.addEventListener('pointerdown', (ev) => {
      if (ev.button !== 0 && ev.button !== 2) return;
      ev.preventDefault();
      el.setPointerCapture(ev.pointerId);
      const [x, y] = this.toImage(ev);
      down = { x, y, cx: ev.clientX, cy: ev.clientY, button: ev.button, shift: ev.shiftKey, dragging: false };
    });
    el.addEventListener('pointermove', (ev) => {
      if (!down || down.button !== 0) return;
      if (!down.dragging && Math.hypot(ev.clientX - down.cx, ev.clientY - down.cy) < DRAG_THRESHOLD_PX) return;
      down.dragging = true;
      const [x, y] = this.toImage(ev);
      this.handlers.onDrag(down.x, down.y, x, y, false, ev.timeStamp);
    });
    const finish = (ev: PointerEvent, cancelled: boolean): void => {
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
    el.addEventListener('pointerup', (ev) => finish(ev, false));
    el.addEventListener('pointercancel', (ev) => finish(ev, true));
  }
}
