/** Entry point of a project's "Upload images" page: files from the picker or dropped on the
 * page go to `POST /api/projects/<id>/images/` one per request, two at a time
 * (lib/uploads.ts UploadQueue); each row shows the file's progress and the server's answer
 * (uploaded; already in the project, with a link to that image; refused with its reason; or
 * failed on the way, with Retry), then each image's embedding
 * (and pre-fill) status from the images API, polled until settled, and a link to annotate. */
import { ApiError, getImage, listImages, setApiRoot, uploadImageFile } from './api';
import {
  formatBytes,
  imageStage,
  pollDelay,
  newImagesNote,
  pollPlan,
  uploadFailure,
  uploadResult,
  UploadQueue,
  type ImageStage,
  type TrackedImage,
  type UploadItem,
  type UploadOutcome,
} from './lib/uploads';

function el<T extends HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (!found) throw new Error(`upload page: #${id} missing from the page`);
  return found as T;
}

const root = el<HTMLElement>('upload-page');
setApiRoot(root.dataset['apiRoot'] ?? '/api/');
const projectId = Number(root.dataset['projectId']);
if (!Number.isInteger(projectId) || projectId < 1) throw new Error(`upload page: bad data-project-id ${root.dataset['projectId']}`);
const prefillEnabled = root.dataset['prefillEnabled'] === 'true';
const annotateUrl = root.dataset['annotateUrl'] ?? `/projects/${projectId}/annotate/`;
const input = el<HTMLInputElement>('file-input');
const dropZone = el<HTMLElement>('drop-zone');
const tbody = el<HTMLTableSectionElement>('upload-rows');
const summary = el<HTMLElement>('upload-summary');
const pollNote = el<HTMLElement>('poll-note');

const rows = new Map<number, HTMLTableRowElement>();

async function send(file: File, onProgress: (fraction: number) => void): Promise<UploadOutcome> {
  try {
    return { ok: true, images: await uploadImageFile(projectId, file, onProgress) };
  } catch (e) {
    if (e instanceof ApiError) return uploadFailure(e.status, e.body, file.name, e.message);
    return { ok: false, refused: false, reason: (e as Error).message };
  }
}

const queue = new UploadQueue<File>(send, {
  concurrency: 2,
  onChange: (item) => {
    render(item);
    if (item.state === 'uploaded') schedulePoll(true);
  },
});

function cell(className: string, ...children: (Node | string)[]): HTMLTableCellElement {
  const td = document.createElement('td');
  td.className = className;
  td.append(...children);
  return td;
}

function span(className: string, text: string, attrs: Record<string, string> = {}): HTMLSpanElement {
  const s = document.createElement('span');
  s.className = className;
  s.textContent = text;
  for (const [k, v] of Object.entries(attrs)) s.setAttribute(k, v);
  return s;
}

/** How the summary line counts files in each state. */
const SUMMARY_LABEL: Record<UploadItem<File>['state'], string> = {
  queued: 'queued', uploading: 'uploading', uploaded: 'uploaded', duplicate: 'already in the project', refused: 'refused',
  failed: 'failed',
};

function uploadCell(item: UploadItem<File>): HTMLTableCellElement {
  const td = cell('upload');
  if (item.state === 'uploading' || item.state === 'queued') {
    const bar = document.createElement('progress');
    bar.max = 1;
    bar.value = item.progress;
    td.append(bar, ' ', span('upload-result', item.state === 'queued' ? 'queued' : `${Math.round(item.progress * 100)}%`));
  } else {
    const result = span('upload-result', '');
    for (const part of uploadResult(item)) {
      if (typeof part === 'string') result.append(part);
      else {
        const a = document.createElement('a');
        a.className = 'duplicate-link';
        a.href = `${annotateUrl}?image=${part.imageId}`;
        a.textContent = part.text;
        result.append(a);
      }
    }
    td.append(result);
    if (item.duplicates.length && item.state === 'uploaded') {
      const shown = item.duplicates.slice(0, 5).map((d) => `${d.name} (image ${d.imageId})`);
      const more = item.duplicates.length - shown.length;
      td.append(document.createElement('br'),
        span('duplicate-note muted', `already in the project: ${shown.join(', ')}${more > 0 ? ` and ${more} more` : ''}`));
    }
  }
  return td;
}

function stageSpan(kind: 'embedding' | 'prefill', stage: ImageStage, image: TrackedImage): HTMLSpanElement {
  const part = kind === 'embedding' ? stage.embedding : stage.prefill;
  return span(`stage ${kind}-stage`, part?.label ?? '', { 'data-tone': part?.tone ?? 'off', 'data-image-id': String(image.id) });
}

function render(item: UploadItem<File>): void {
  let tr = rows.get(item.key);
  if (!tr) {
    tr = document.createElement('tr');
    tr.className = 'upload-row';
    tr.dataset['key'] = String(item.key);
    tr.dataset['fileName'] = item.file.name;
    rows.set(item.key, tr);
    tbody.append(tr);
  }
  tr.dataset['state'] = item.state;
  const stages = item.images.map((im) => ({ image: im, stage: imageStage(im, prefillEnabled) }));
  const many = item.images.length > 1;
  const embedding = cell('embedding', ...stages.flatMap(({ image, stage }) => [
    ...(many ? [span('member', `${image.file_name}: `)] : []), stageSpan('embedding', stage, image), document.createElement('br'),
  ]));
  tr.dataset['embedding'] = !stages.length ? '' : stages.every((s) => s.image.embedding_status === 'ready') ? 'ready'
    : stages.some((s) => s.image.embedding_status === 'failed') ? 'failed' : 'pending';
  const actions = cell('actions');
  // Only a failure on the way is worth sending again; a refusal would be refused again.
  if (item.state === 'failed') {
    const retry = document.createElement('button');
    retry.type = 'button';
    retry.className = 'retry';
    retry.textContent = 'Retry';
    retry.addEventListener('click', () => queue.retry(item.key));
    actions.append(retry);
  }
  for (const { image } of stages) {
    const a = document.createElement('a');
    a.className = 'annotate-link';
    a.href = `${annotateUrl}?image=${image.id}`;
    a.textContent = many ? `Annotate ${image.file_name} →` : 'Annotate →';
    actions.append(a, ' ');
  }
  const name = cell('file', span('file-name', item.file.name), ' ', span('muted', formatBytes(item.file.size)));
  const cells = [name, uploadCell(item), embedding];
  if (prefillEnabled) {
    cells.push(cell('prefill', ...stages.flatMap(({ image, stage }) => [stageSpan('prefill', stage, image), document.createElement('br')])));
  }
  cells.push(actions);
  tr.replaceChildren(...cells);
  renderSummary();
}

function renderSummary(): void {
  const counts: Record<string, number> = { queued: 0, uploading: 0, uploaded: 0, duplicate: 0, refused: 0, failed: 0 };
  let skipped = 0;
  let images = 0;
  let ready = 0;
  let stored = 0; // new images from the uploaded files (a zip gives several)
  for (const item of queue.items) {
    counts[item.state] = (counts[item.state] ?? 0) + 1;
    if (item.state === 'uploaded') {
      skipped += item.duplicates.length;
      stored += item.stored;
    }
    for (const im of item.images) {
      images++;
      if (im.embedding_status === 'ready') ready++;
    }
  }
  const parts = Object.entries(counts).filter(([, n]) => n > 0)
    .map(([state, n]) => `${n} ${SUMMARY_LABEL[state as UploadItem<File>['state']]}`
      + (state === 'uploaded' ? newImagesNote(n, stored) : ''));
  if (skipped) parts.push(`${skipped} zip member${skipped === 1 ? '' : 's'} already in the project (skipped)`);
  summary.textContent = queue.items.length ? `${parts.join(', ')} · embeddings ready: ${ready}/${images}` : '';
  summary.dataset['uploaded'] = String(counts['uploaded']);
  summary.dataset['duplicates'] = String((counts['duplicate'] ?? 0) + skipped);
  summary.dataset['ready'] = String(ready);
  summary.dataset['busy'] = String(queue.busy);
}

// ------------------------------------------------------------ status polling

let pollTimer: ReturnType<typeof setTimeout> | null = null;
let pollRound = 0;
let polling = false;

function unsettled(): number[] {
  return queue.items.flatMap((item) => item.images).filter((im) => !imageStage(im, prefillEnabled).settled).map((im) => im.id);
}

function update(fresh: TrackedImage): void {
  for (const item of queue.items) {
    const i = item.images.findIndex((im) => im.id === fresh.id);
    if (i >= 0) {
      item.images[i] = fresh;
      render(item);
    }
  }
}

/** (Re)arms the next poll; `reset` starts again from the short delay (a new upload landed). */
function schedulePoll(reset = false): void {
  if (reset) pollRound = 0;
  if (polling) return; // the poll in flight re-arms when it ends
  if (pollTimer !== null) clearTimeout(pollTimer);
  pollTimer = null;
  if (!unsettled().length) return;
  pollTimer = setTimeout(() => void poll(), pollDelay(pollRound++));
}

async function poll(): Promise<void> {
  pollTimer = null;
  polling = true;
  const plan = pollPlan(unsettled());
  try {
    if (plan.kind === 'each') {
      for (const id of plan.ids) update(await getImage(id));
    } else if (plan.kind === 'list') {
      const wanted = new Set(unsettled());
      for (const im of await listImages(projectId)) if (wanted.has(im.id)) update(im);
    }
    pollNote.textContent = '';
  } catch (e) {
    pollNote.textContent = `Could not refresh the statuses (${(e as Error).message}); trying again.`;
  } finally {
    polling = false;
  }
  schedulePoll();
}

// ------------------------------------------------------------ picking and dropping files

function addFiles(files: FileList | null | undefined): void {
  if (files && files.length) queue.add(Array.from(files));
}

input.addEventListener('change', () => {
  addFiles(input.files);
  input.value = ''; // the same file can be picked again
});

let dragDepth = 0;
function hasFiles(ev: DragEvent): boolean {
  return !!ev.dataTransfer && Array.from(ev.dataTransfer.types).includes('Files');
}
// The whole page takes a drop: a file dropped beside the zone must not make the browser
// navigate to it (and lose the results shown here).
window.addEventListener('dragenter', (ev) => {
  if (!hasFiles(ev)) return;
  dragDepth++;
  dropZone.classList.add('dragging');
});
window.addEventListener('dragleave', () => {
  dragDepth = Math.max(0, dragDepth - 1);
  if (!dragDepth) dropZone.classList.remove('dragging');
});
window.addEventListener('dragover', (ev) => {
  if (!hasFiles(ev)) return;
  ev.preventDefault();
  if (ev.dataTransfer) ev.dataTransfer.dropEffect = 'copy';
});
window.addEventListener('drop', (ev) => {
  ev.preventDefault();
  dragDepth = 0;
  dropZone.classList.remove('dragging');
  addFiles(ev.dataTransfer?.files);
});
window.addEventListener('beforeunload', (ev) => {
  if (queue.busy) ev.preventDefault(); // files still uploading: the browser asks first
});

root.dataset['ready'] = 'true';
