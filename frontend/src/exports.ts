/** Entry point of a project's "Exports" page: start a background export (format and options
 * -> `POST /api/projects/<id>/exports/`), the project's export jobs in a table
 * (`GET /api/projects/<id>/exports/`, polled while one is queued or running) with status,
 * progress, size, who started it and when, when its file is deleted, the server's reason for
 * a failure and a Download link when done; and, for roles that may import, a COCO file
 * imported as annotations or as pre-fill proposals with the server's report. The wording is
 * lib/exports.ts (unit-tested). */
import { ApiError, getExport, importCoco, listExports, setApiRoot, startExport } from './api';
import { activeJobs, exportRow, importSummary, type ExportJob, type ImportMode } from './lib/exports';
import { formatBytes, pollDelay } from './lib/uploads';

function el<T extends HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (!found) throw new Error(`exports page: #${id} missing from the page`);
  return found as T;
}

const root = el<HTMLElement>('exports-page');
setApiRoot(root.dataset['apiRoot'] ?? '/api/');
const projectId = Number(root.dataset['projectId']);
if (!Number.isInteger(projectId) || projectId < 1) throw new Error(`exports page: bad data-project-id ${root.dataset['projectId']}`);
const retentionHours = Number(root.dataset['retentionHours']) || null;

const form = el<HTMLFormElement>('export-form');
const startButton = el<HTMLButtonElement>('export-start');
const onlyApproved = el<HTMLInputElement>('export-only-approved');
const includeImages = el<HTMLInputElement>('export-include-images');
const message = el<HTMLElement>('export-message');
const tbody = el<HTMLTableSectionElement>('export-rows');
const pollNote = el<HTMLElement>('poll-note');

let jobs: ExportJob[] = [];

function text(tag: string, className: string, content: string): HTMLElement {
  const node = document.createElement(tag);
  if (className) node.className = className;
  node.textContent = content;
  return node;
}

function cell(className: string, ...children: (Node | string)[]): HTMLTableCellElement {
  const td = document.createElement('td');
  td.className = className;
  td.append(...children);
  return td;
}

/** A UTC time (the zone named), with the browser's local time on hover. */
function timeNode(iso: string | null, shown: string): Node {
  if (!iso || !shown) return document.createTextNode(shown);
  const t = document.createElement('time');
  t.dateTime = iso;
  t.textContent = shown;
  const local = new Date(iso);
  if (!Number.isNaN(local.getTime())) t.title = `your time: ${local.toLocaleString()}`;
  return t;
}

function say(node: HTMLElement, words: string, state: 'ok' | 'error' | 'busy' | '' = ''): void {
  node.textContent = words;
  node.dataset['state'] = state;
}

function drawJobs(): void {
  const now = Date.now();
  if (!jobs.length) {
    const tr = document.createElement('tr');
    const td = cell('muted', 'No exports yet: start one above.');
    td.colSpan = 8;
    tr.className = 'empty';
    tr.append(td);
    tbody.replaceChildren(tr);
    return;
  }
  tbody.replaceChildren(...jobs.map((job) => {
    const row = exportRow(job, now, retentionHours);
    const tr = document.createElement('tr');
    tr.className = 'export-row';
    tr.dataset['exportId'] = String(row.id);
    tr.dataset['status'] = row.status;

    const status = cell('status', text('span', `status-badge status-${row.status}`, row.statusText));
    if (row.detail) status.append(text('div', row.detailIsError ? 'detail error' : 'detail muted', row.detail));

    const progress = cell('progress');
    if (row.bar !== null) {
      const bar = document.createElement('progress');
      bar.max = 1;
      bar.value = row.bar;
      progress.append(bar, ' ');
    }
    progress.append(text('span', 'progress-text', row.progressText));

    const created = cell('created', timeNode(job.created_at, row.created));
    if (row.by) created.append(document.createElement('br'), text('span', 'muted by', `by ${row.by}`));

    const download = cell('download');
    if (row.downloadUrl) {
      const a = document.createElement('a');
      a.className = 'download-link';
      a.href = row.downloadUrl;
      a.textContent = 'Download';
      a.addEventListener('click', (ev) => void followDownload(ev, job.id, a));
      download.append(a);
    }

    tr.append(
      cell('id', `#${row.id}`),
      cell('format', row.format),
      status,
      progress,
      cell('size num', row.size),
      created,
      cell('expires', timeNode(job.expires_at, row.expires)),
      download,
    );
    return tr;
  }));
}

/**
 * A Download click asks for the job first: a file deleted since the table was drawn (the
 * retention cleanup ran) would otherwise open the server's 410 as a page. Still done: the
 * link is followed (the file comes as an attachment, the page stays).
 */
async function followDownload(ev: MouseEvent, exportId: number, link: HTMLAnchorElement): Promise<void> {
  if (ev.button !== 0 || ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.altKey) return; // new tab etc.: the browser's
  ev.preventDefault();
  let fresh: ExportJob;
  try {
    fresh = await getExport(exportId);
  } catch {
    window.location.assign(link.href); // cannot ask: let the server answer the download itself
    return;
  }
  if (fresh.status === 'done' && fresh.download_url) {
    window.location.assign(fresh.download_url);
    return;
  }
  jobs = jobs.map((j) => (j.id === fresh.id ? fresh : j));
  drawJobs();
  say(message, `Export #${fresh.id} is ${fresh.status} now: ${fresh.status === 'expired' ? 'its file was deleted; start a new export.' : 'nothing to download.'}`, 'error');
}

// ------------------------------------------------------------ polling

let pollTimer: ReturnType<typeof setTimeout> | null = null;
let pollRound = 0;
let polling = false;

/** (Re)arms the next refresh while a job is queued or running; `reset` starts again from the
 * short delay (a job was just started). */
function schedulePoll(reset = false): void {
  if (reset) pollRound = 0;
  if (polling) return; // the refresh in flight re-arms when it ends
  if (pollTimer !== null) clearTimeout(pollTimer);
  pollTimer = null;
  if (!activeJobs(jobs).length) {
    root.dataset['polling'] = 'false';
    return;
  }
  root.dataset['polling'] = 'true';
  pollTimer = setTimeout(() => void refresh(), pollDelay(pollRound++));
}

async function refresh(): Promise<void> {
  pollTimer = null;
  polling = true;
  try {
    jobs = await listExports(projectId);
    drawJobs();
    say(pollNote, '');
  } catch (e) {
    say(pollNote, `Could not refresh the export jobs (${(e as Error).message}); trying again.`, 'error');
    pollRound = Math.min(pollRound, 6);
    polling = false;
    pollTimer = setTimeout(() => void refresh(), pollDelay(pollRound++));
    return;
  }
  polling = false;
  schedulePoll();
}

// A tab that comes back after a while shows the jobs as they are now (finished, expired).
document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'visible' && !polling && pollTimer === null) void refresh();
});

// ------------------------------------------------------------ starting an export

form.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const picked = form.querySelector<HTMLInputElement>('input[name="format"]:checked');
  if (!picked) {
    say(message, 'Choose a format.', 'error');
    return;
  }
  startButton.disabled = true;
  say(message, 'Starting…', 'busy');
  startExport(projectId, { format: picked.value, only_approved: onlyApproved.checked, include_images: includeImages.checked })
    .then((job) => {
      jobs = [job, ...jobs.filter((j) => j.id !== job.id)];
      drawJobs();
      say(message, `Export #${job.id} queued: a worker writes it in the background.`, 'ok');
      schedulePoll(true);
    })
    .catch((e: unknown) => say(message, `Could not start the export: ${e instanceof ApiError ? e.message : String(e)}`, 'error'))
    .finally(() => {
      startButton.disabled = false;
    });
});

// ------------------------------------------------------------ import

function initImport(section: HTMLElement): void {
  const importForm = el<HTMLFormElement>('import-form');
  const fileInput = el<HTMLInputElement>('import-file');
  const submit = el<HTMLButtonElement>('import-submit');
  const status = el<HTMLElement>('import-status');
  const bar = el<HTMLProgressElement>('import-progress');
  const result = el<HTMLElement>('import-result');

  importForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const file = fileInput.files?.[0];
    if (!file) {
      say(status, 'Choose a COCO instances JSON file first.', 'error');
      return;
    }
    const mode = (importForm.querySelector<HTMLInputElement>('input[name="import-mode"]:checked')?.value ?? 'annotations') as ImportMode;
    submit.disabled = true;
    result.hidden = true;
    result.replaceChildren();
    delete result.dataset['imported'];
    delete result.dataset['skipped'];
    bar.hidden = false;
    bar.value = 0;
    say(status, `Sending ${file.name} (${formatBytes(file.size)})…`, 'busy');
    section.dataset['state'] = 'busy';
    importCoco(projectId, file, mode, (fraction) => {
      bar.value = fraction;
      if (fraction >= 1) say(status, `The server is importing ${file.name}…`, 'busy');
    })
      .then((report) => {
        const summary = importSummary(report, mode);
        say(status, '', 'ok');
        const list = document.createElement('ul');
        list.className = 'import-lines';
        for (const line of summary.lines) list.append(text('li', '', line));
        if (summary.more) list.append(text('li', 'muted', `… and ${summary.more} more`));
        result.replaceChildren(text('p', 'import-headline', summary.headline), ...(list.children.length ? [list] : []));
        result.dataset['imported'] = String(report.imported);
        result.dataset['skipped'] = String(report.skipped.length);
        result.dataset['unmatched'] = String(report.unmatched_images.length);
        result.dataset['mode'] = mode;
        result.hidden = false;
        section.dataset['state'] = 'done';
      })
      .catch((e: unknown) => {
        say(status, `Import refused: ${e instanceof ApiError ? e.message : String(e)}`, 'error');
        section.dataset['state'] = 'error';
      })
      .finally(() => {
        submit.disabled = false;
        bar.hidden = true;
      });
  });
}

const importSection = document.getElementById('import-section');
if (importSection) initImport(importSection);

refresh()
  .catch(() => undefined)
  .finally(() => {
    root.dataset['ready'] = 'true';
  });
