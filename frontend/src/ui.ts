/**
 * Toolbar, side panel (categories, candidates, annotations, keyboard help) and status
 * line. Rendered from the store; user actions go to the controller through `Actions`.
 */
import { candidateChips } from './lib/prompts';
import { parseThreshold } from './lib/proposals';
import { MAX_RADIUS, MIN_RADIUS } from './lib/brush';
import { categoryById, currentStep, finalMask, focusedProposal, shownStep, type AnnotateState, type Store } from './store';

export interface Actions {
  prev(): void;
  next(): void;
  undo(): void;
  clear(): void;
  save(): void;
  chooseCandidate(index: number): void;
  /** Back to the candidate the page picks by itself for the prompts (key 0, the "auto" chip). */
  chooseAutoCandidate(): void;
  selectCategory(id: number): void;
  deleteAnnotation(id: number): void;
  focusProposal(id: number): void;
  acceptProposal(): void;
  rejectProposal(): void;
  editProposal(): void;
  acceptAbove(): void;
  setThreshold(t: number): void;
  /** A threshold outside [0, 1] was typed: say why it was not taken. */
  thresholdRefused(message: string): void;
  toggleShade(): void;
  /** B: brush mode on / off. */
  toggleBrush(): void;
  /** ✎ on a saved mask: it becomes the current mask, to brush and save again. */
  editAnnotation(id: number): void;
}

type Attrs = Record<string, string | number | boolean | undefined>;

function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: (Node | string | null)[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    if (k === 'class') el.className = String(v);
    else if (k.startsWith('data-')) el.setAttribute(k, String(v));
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) if (c !== null) el.append(c);
  return el;
}

const KEYS: [string, string][] = [
  ['Click', 'positive point'],
  ['Right-click / Shift+click', 'negative point'],
  ['Drag', 'box'],
  ['1 / 2 / 3', 'mask candidate'],
  ['0', 'automatic mask choice (auto)'],
  ['Enter', 'save mask'],
  ['Ctrl+Z', 'undo prompt / stroke'],
  ['Esc', 'clear prompts and strokes'],
  ['N / P', 'next / previous image'],
  ['Tab / Shift+Tab', 'next / previous proposal'],
  ['A', 'accept proposal'],
  ['X / Delete', 'reject proposal'],
  ['E', 'edit proposal (then click, Enter)'],
  ['Shift+A', 'accept all ≥ threshold'],
  ['M', 'shade what no mask covers'],
  ['B', 'brush: drag paints, right / Shift+drag erases'],
  ['[ / ]', 'smaller / larger brush'],
  ['Wheel / + / -', 'zoom (at the cursor / centre)'],
  ['F', 'fit the image'],
  ['Space+drag / Middle-drag / Arrows', 'pan'],
];
/** The keys a read-only page keeps (lib/access.ts VIEW_COMMANDS). */
const VIEW_KEYS: [string, string][] = [
  ['N / P', 'next / previous image'],
  ['Tab / Shift+Tab', 'next / previous proposal'],
  ['M', 'shade what no mask covers'],
  ['Wheel / + / -', 'zoom (at the cursor / centre)'],
  ['F', 'fit the image'],
  ['Space+drag / Middle-drag / Arrows', 'pan'],
];

export interface PanelOptions {
  /** A role that may view but not annotate: no prompt, save, proposal or delete controls. */
  readOnly?: boolean;
}

export class Panel {
  readonly toolbar: HTMLElement;
  readonly side: HTMLElement;
  readonly status: HTMLElement;
  private readonly projectName = h('span', { class: 'project-name' });
  private readonly imageName = h('span', { class: 'image-name', id: 'image-name' });
  private readonly prevBtn = h('button', { class: 'btn', id: 'prev-btn', title: 'Previous image (P)' }, '◀ Prev');
  private readonly nextBtn = h('button', { class: 'btn', id: 'next-btn', title: 'Next image (N)' }, 'Next ▶');
  private readonly categorySelect = h('select', { id: 'category-select', 'aria-label': 'Category' });
  private readonly chips = h('div', { class: 'chips', id: 'candidate-chips', role: 'group', 'aria-label': 'Mask candidates' });
  private readonly undoBtn = h('button', { class: 'btn', id: 'undo-btn', title: 'Undo (Ctrl+Z)' }, 'Undo');
  private readonly clearBtn = h('button', { class: 'btn', id: 'clear-btn', title: 'Clear prompts (Esc)' }, 'Clear');
  private readonly saveBtn = h('button', { class: 'btn primary', id: 'save-btn', title: 'Save mask (Enter)' }, 'Save');
  private readonly brushBtn = h('button', { class: 'btn', id: 'brush-btn', title: `Brush (B): drag paints into the mask, right-drag or Shift+drag erases; [ / ] size (${MIN_RADIUS}–${MAX_RADIUS} px)`, 'aria-pressed': 'false' }, 'Brush');
  private readonly categoryList = h('ul', { class: 'category-list', id: 'category-list' });
  private readonly annotationList = h('ul', { class: 'annotation-list', id: 'annotation-list' });
  private readonly annotationCount = h('span', { class: 'count' });
  private readonly decoderStatus = h('span', { class: 'status-item', id: 'decoder-status' });
  private readonly embeddingStatus = h('span', { class: 'status-item', id: 'embedding-status' });
  private readonly messageEl = h('span', { class: 'status-message', id: 'status-message', role: 'status', 'aria-live': 'polite' });
  private readonly maskInfo = h('span', { class: 'status-item', id: 'mask-info' });
  private readonly unsavedStatus = h('span', { class: 'status-item unsaved-status', id: 'unsaved-status', 'data-count': '0' });
  private readonly proposalList = h('ul', { class: 'proposal-list', id: 'proposal-list' });
  private readonly proposalCount = h('span', { class: 'count', id: 'proposal-count' });
  private readonly proposalState = h('p', { class: 'muted', id: 'proposal-state' });
  private readonly acceptBtn = h('button', { class: 'btn', id: 'accept-proposal-btn', title: 'Accept the selected proposal (A)' }, 'Accept');
  private readonly rejectBtn = h('button', { class: 'btn', id: 'reject-proposal-btn', title: 'Reject the selected proposal (X)' }, 'Reject');
  private readonly editBtn = h('button', { class: 'btn', id: 'edit-proposal-btn', title: 'Refine the selected proposal with clicks (E)' }, 'Edit');
  private readonly thresholdInput = h('input', { type: 'number', id: 'prefill-threshold', min: 0, max: 1, step: 'any', 'aria-label': 'Accept-all threshold (predicted IoU)' });
  private readonly acceptAboveBtn = h('button', { class: 'btn', id: 'accept-above-btn', title: 'Accept every proposal at or above the threshold (Shift+A)' }, 'Accept all ≥');
  private readonly shadeToggle = h('input', { type: 'checkbox', id: 'shade-toggle' });

  private readonly readOnly: boolean;

  constructor(store: Store, private readonly actions: Actions, options: PanelOptions = {}) {
    const ro = (this.readOnly = options.readOnly ?? false);
    this.toolbar = h(
      'header',
      { class: 'toolbar' },
      this.projectName,
      h('div', { class: 'group nav' }, this.prevBtn, this.imageName, this.nextBtn),
      ro ? null : h('label', { class: 'group' }, h('span', { class: 'label' }, 'Category'), this.categorySelect),
      ro ? null : h('div', { class: 'group' }, h('span', { class: 'label' }, 'Mask'), this.chips),
      ro ? null : h('div', { class: 'group end' }, this.brushBtn, this.undoBtn, this.clearBtn, this.saveBtn),
    );
    this.side = h(
      'aside',
      { class: 'side-panel' },
      h('section', {}, h('h2', {}, 'Categories'), this.categoryList),
      h(
        'section',
        { class: 'proposals', id: 'proposals-section' },
        h('h2', {}, 'Proposals ', this.proposalCount),
        this.proposalState,
        ro ? null : h('div', { class: 'row' }, this.acceptBtn, this.rejectBtn, this.editBtn),
        ro ? null : h('div', { class: 'row' }, this.acceptAboveBtn, this.thresholdInput),
        h('label', { class: 'row' }, this.shadeToggle, h('span', {}, 'Shade what no mask covers (M)')),
        this.proposalList,
      ),
      h('section', {}, h('h2', {}, 'Annotations ', this.annotationCount), this.annotationList),
      h(
        'section',
        { class: 'help' },
        h('h2', {}, 'Keyboard'),
        h('dl', {}, ...(ro ? VIEW_KEYS : KEYS).flatMap(([k, v]) => [h('dt', {}, ...k.split(' / ').flatMap((x, i) => [i ? ' / ' : '', h('kbd', {}, x)])), h('dd', {}, v)])),
      ),
    );
    this.status = h('footer', { class: 'status-line', id: 'status-line' }, this.decoderStatus, this.embeddingStatus, this.maskInfo, this.unsavedStatus, this.messageEl);

    this.prevBtn.onclick = () => actions.prev();
    this.nextBtn.onclick = () => actions.next();
    this.undoBtn.onclick = () => actions.undo();
    this.clearBtn.onclick = () => actions.clear();
    this.saveBtn.onclick = () => actions.save();
    this.brushBtn.onclick = () => actions.toggleBrush();
    this.acceptBtn.onclick = () => actions.acceptProposal();
    this.rejectBtn.onclick = () => actions.rejectProposal();
    this.editBtn.onclick = () => actions.editProposal();
    this.acceptAboveBtn.onclick = () => actions.acceptAbove();
    this.thresholdInput.onchange = () => {
      const r = parseThreshold(this.thresholdInput.value);
      if (r.ok) this.thresholdInput.removeAttribute('aria-invalid');
      else this.thresholdInput.setAttribute('aria-invalid', 'true');
      this.thresholdInput.title = r.ok ? '' : r.error;
      if (r.ok) actions.setThreshold(r.value);
      else actions.thresholdRefused(r.error);
      this.thresholdInput.blur();
      // A refused value does not stay in the box as if it were in use.
      this.thresholdInput.value = String(Math.round(store.get().prefillThreshold * 1000) / 1000);
    };
    this.shadeToggle.onchange = () => {
      actions.toggleShade();
      this.shadeToggle.blur();
    };
    // A mouse click must not leave focus on a button: Enter would then press it again
    // instead of saving the mask. Keyboard focus (Tab) still works as usual.
    for (const el of [this.toolbar, this.side]) {
      el.addEventListener('mousedown', (ev) => {
        if ((ev.target as HTMLElement).closest('button')) ev.preventDefault();
      });
    }
    this.categorySelect.onchange = () => {
      actions.selectCategory(Number(this.categorySelect.value));
      this.categorySelect.blur(); // give keys (N, P, 1-3) back to the canvas
    };
    store.subscribe((s, prev) => this.render(s, prev));
  }

  private render(s: AnnotateState, prev: AnnotateState): void {
    if (s.project !== prev.project) this.renderCategories(s);
    if (s.categoryId !== prev.categoryId || s.project !== prev.project) this.renderCategorySelection(s);
    if (s.image !== prev.image || s.project !== prev.project || s.imageError !== prev.imageError || s.backHistory !== prev.backHistory) {
      this.projectName.textContent = s.project?.name ?? '';
      this.imageName.textContent = s.image ? `${s.image.file_name}  (#${s.image.id})` : s.imageError ? 'no image open' : 'loading…';
      this.imageName.title = s.image ? `${s.image.width}×${s.image.height}` : '';
      const queue = s.image?.neighbour_order === 'queue';
      this.prevBtn.disabled = !s.image?.prev_id && !(queue && s.backHistory > 0);
      this.nextBtn.disabled = !s.image?.next_id;
      this.prevBtn.title = queue ? 'Back to the image before (P)' : 'Previous image (P)';
      this.nextBtn.title = queue ? 'Next image of your queue (N)' : 'Next image (N)';
    }
    if (s.steps !== prev.steps) this.renderChips(s);
    if (s.saved !== prev.saved || s.project !== prev.project || s.editingAnnotation !== prev.editingAnnotation) this.renderAnnotations(s);
    if (s.unsaved !== prev.unsaved) {
      this.unsavedStatus.textContent = s.unsaved.text;
      this.unsavedStatus.dataset['count'] = String(s.unsaved.count);
      this.unsavedStatus.classList.toggle('has-unsaved', s.unsaved.count > 0);
    }
    if (s.proposals !== prev.proposals || s.focusedProposal !== prev.focusedProposal || s.editingProposal !== prev.editingProposal
      || s.proposalsStatus !== prev.proposalsStatus || s.imageError !== prev.imageError || s.prefillThreshold !== prev.prefillThreshold || s.shadeUncovered !== prev.shadeUncovered) {
      this.renderProposals(s);
    }
    if (s.decoder !== prev.decoder || s.embedding !== prev.embedding || s.message !== prev.message || s.steps !== prev.steps || s.saving !== prev.saving
      || s.edit !== prev.edit || s.editingAnnotation !== prev.editingAnnotation || s.brushOn !== prev.brushOn || s.brushRadius !== prev.brushRadius) {
      this.renderStatus(s);
    }
    const hasMask = (finalMask(s)?.area ?? 0) > 0;
    this.saveBtn.disabled = !hasMask || s.saving || (s.categoryId === null && (s.project?.categories.length ?? 0) > 0);
    const strokes = s.edit?.strokes.length ?? 0;
    this.undoBtn.disabled = s.steps.length === 0 && strokes === 0;
    this.clearBtn.disabled = s.steps.length === 0 && strokes === 0 && !s.editingAnnotation;
    this.brushBtn.classList.toggle('active', s.brushOn);
    this.brushBtn.setAttribute('aria-pressed', String(s.brushOn));
    this.brushBtn.textContent = s.brushOn ? `Brush ${s.brushRadius} px` : 'Brush';
  }

  private renderCategories(s: AnnotateState): void {
    const cats = s.project?.categories ?? [];
    this.categorySelect.replaceChildren(...cats.map((c) => h('option', { value: c.id }, c.name)));
    this.categoryList.replaceChildren(
      ...cats.map((c) => {
        const li = h('li', { 'data-category-id': c.id, tabindex: 0 }, h('span', { class: 'swatch', style: `background:${c.color}` }), c.name);
        li.onclick = () => this.actions.selectCategory(c.id);
        return li;
      }),
    );
  }

  private renderCategorySelection(s: AnnotateState): void {
    // No label selected (e.g. the selected one was deleted): the select shows none, so picking any fires a change.
    this.categorySelect.value = s.categoryId !== null ? String(s.categoryId) : '';
    for (const li of this.categoryList.children) {
      li.classList.toggle('selected', (li as HTMLElement).dataset['categoryId'] === String(s.categoryId));
    }
  }

  private renderChips(s: AnnotateState): void {
    const step = currentStep(s);
    const shown = shownStep(s);
    const r = shown?.result;
    if (!r) {
      this.chips.replaceChildren(h('span', { class: 'muted' }, step ? 'decoding…' : 'click the image'));
      return;
    }
    // The single-mask output ("auto", the choice for several prompts) stays a chip after
    // 1, 2 or 3 was picked, so it can be picked again (also key 0).
    const chips = candidateChips(shown.prompts, shown.chosen).map((i) => {
      const auto = i === 0;
      const b = h(
        'button',
        {
          class: `chip${auto ? ' auto' : ''}${shown.chosen === i ? ' active' : ''}`, 'data-candidate': i,
          title: auto ? `single-mask output, the automatic choice for several prompts (0): predicted IoU, ${r.areas[0]} px`
            : `candidate ${i}: predicted IoU, ${r.areas[i]} px`,
        },
        h('kbd', {}, String(i)),
        ` ${auto ? 'auto · ' : ''}${(r.iou_predictions[i] ?? 0).toFixed(2)}`,
      );
      b.onclick = () => (auto ? this.actions.chooseAutoCandidate() : this.actions.chooseCandidate(i));
      return b;
    });
    this.chips.replaceChildren(...chips);
  }

  private renderAnnotations(s: AnnotateState): void {
    this.annotationCount.textContent = `(${s.saved.length})`;
    if (!s.saved.length) {
      this.annotationList.replaceChildren(h('li', { class: 'muted empty' }, 'No masks saved on this image yet.'));
      return;
    }
    this.annotationList.replaceChildren(
      ...s.saved.map(({ annotation: a, unsaved }) => {
        const cat = categoryById(s, a.category);
        if (unsaved) {
          // Kept in this browser until the server has it (lib/outbox.ts).
          const discard = h('button', { class: 'icon-btn', title: 'Discard this unsaved mask', 'aria-label': 'Discard unsaved mask' }, '×');
          discard.onclick = () => this.actions.deleteAnnotation(a.id);
          return h(
            'li',
            { class: `unsaved${unsaved.rejected ? ' rejected' : ''}`, 'data-unsaved-key': unsaved.key, title: unsaved.error },
            h('span', { class: 'swatch', style: `background:${cat?.color ?? '#999'}` }),
            h('span', { class: 'name' }, cat?.name ?? 'unlabelled'),
            h('span', { class: 'unsaved-badge' }, unsaved.rejected ? `not saved: ${unsaved.error}` : 'unsaved'),
            discard,
          );
        }
        const del = this.readOnly ? null : h('button', { class: 'icon-btn', title: 'Delete annotation', 'aria-label': 'Delete annotation' }, '×');
        if (del) del.onclick = () => this.actions.deleteAnnotation(a.id);
        const edit = this.readOnly ? null : h('button', { class: 'icon-btn edit-annotation', title: 'Edit this mask with the brush (Enter saves)', 'aria-label': 'Edit annotation' }, '✎');
        if (edit) edit.onclick = () => this.actions.editAnnotation(a.id);
        const editing = s.editingAnnotation?.id === a.id;
        // A reviewer's verdict and reason (issue 5), under the row.
        const review = a.review_status && a.review_status !== 'pending'
          ? h('span', { class: `review ${a.review_status}`, title: a.reviewed_by ? `by ${a.reviewed_by}` : '' },
            a.review_status + (a.review_comment ? `: ${a.review_comment}` : ''))
          : null;
        return h(
          'li',
          { 'data-annotation-id': a.id, 'data-review-status': a.review_status ?? 'pending', class: editing ? 'editing' : undefined },
          h('span', { class: 'swatch', style: `background:${cat?.color ?? '#999'}` }),
          h('span', { class: 'name' }, cat?.name ?? (a.category === null ? 'unlabelled' : `category ${a.category}`)),
          h('span', { class: 'muted' }, `${a.area} px · IoU ${a.predicted_iou?.toFixed(2) ?? '–'}${a.prompts?.brush ? ' · hand-edited' : ''}${editing ? ' · editing' : ''}`),
          edit,
          del,
          review,
        );
      }),
    );
  }

  private renderProposals(s: AnnotateState): void {
    const n = s.proposals.length;
    this.proposalCount.textContent = `(${n})`;
    const state = {
      none: n ? '' : 'No pre-fill for this image.',
      loading: 'Loading…',
      pending: 'Pre-fill queued on the server…',
      running: 'Pre-fill running on the server…',
      ready: n ? '' : 'No pending proposals on this image.',
      failed: 'Pre-fill failed on the server.',
      unavailable: 'Could not load the proposals from the server.',
    }[s.proposalsStatus];
    const editing = s.editingProposal !== null ? `Editing #${s.editingProposal}: click to refine, Enter saves, Esc cancels.` : '';
    this.proposalState.textContent = !s.image && s.imageError ? 'No image open.' : (editing || state);
    this.proposalState.dataset['status'] = s.proposalsStatus;
    const focused = focusedProposal(s);
    this.acceptBtn.disabled = !focused && s.editingProposal === null;
    this.rejectBtn.disabled = !focused;
    this.editBtn.disabled = !focused;
    this.acceptAboveBtn.disabled = !n;
    if (document.activeElement !== this.thresholdInput) this.thresholdInput.value = String(Math.round(s.prefillThreshold * 1000) / 1000);
    this.shadeToggle.checked = s.shadeUncovered;
    this.proposalList.replaceChildren(
      ...s.proposals.map(({ proposal: p }) => {
        const li = h(
          'li',
          { 'data-proposal-id': p.id, class: `${p.id === s.focusedProposal ? 'focused' : ''}${p.id === s.editingProposal ? ' editing' : ''}`.trim() || undefined },
          h('span', { class: 'name' }, `#${p.id}`),
          h('span', { class: 'muted' }, `${p.area} px · IoU ${p.predicted_iou?.toFixed(2) ?? '–'} · stab ${p.stability_score?.toFixed(2) ?? '–'}`),
        );
        li.onclick = () => this.actions.focusProposal(p.id);
        return li;
      }),
    );
    this.proposalList.querySelector('li.focused')?.scrollIntoView({ block: 'nearest' });
  }

  private renderStatus(s: AnnotateState): void {
    const d = s.decoder;
    const e = s.embedding;
    const dText = { idle: '—', loading: 'loading…', pending: 'loading…', ready: 'ready', failed: 'failed' }[d.phase];
    const eText = { idle: '—', loading: 'loading…', pending: 'pending — computing on the server…', ready: 'ready', failed: 'failed' }[e.phase];
    this.decoderStatus.textContent = `Decoder: ${dText}${d.detail ? ` (${d.detail})` : ''}`;
    this.decoderStatus.dataset['phase'] = d.phase;
    this.embeddingStatus.textContent = `Embedding: ${eText}${e.detail ? ` ${e.detail}` : ''}`;
    this.embeddingStatus.dataset['phase'] = e.phase;
    this.status.dataset['decoder'] = d.phase;
    this.status.dataset['embedding'] = e.phase;
    const m = finalMask(s);
    const strokes = s.edit?.strokes.length ?? 0;
    const edited = strokes ? `, ${strokes} brush stroke${strokes > 1 ? 's' : ''}` : '';
    this.maskInfo.textContent = !m ? ''
      : s.editingAnnotation ? `Editing #${s.editingAnnotation.id}: ${m.area} px${edited}`
        : `Mask: ${m.area} px, candidate ${m.index}, IoU ${m.iou.toFixed(3)}${edited}`;
    const link = !s.saving && s.message?.link;
    this.messageEl.replaceChildren(s.saving ? 'Saving…' : (s.message?.text ?? ''),
      ...(link ? [' ', h('a', { href: link.href, id: 'status-message-link' }, link.text)] : []));
    this.messageEl.className = `status-message ${s.message?.kind ?? ''}`;
    this.status.classList.toggle('has-error', d.phase === 'failed' || e.phase === 'failed' || s.message?.kind === 'error');
  }
}
