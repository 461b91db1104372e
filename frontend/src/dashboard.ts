/** Entry point of the managers' dashboard page: draws the charts of lib/dashboardCharts.ts
 * from the stats the template embeds (#stats-data); the tables are rendered by Django. The
 * "Model" panel (managers, admins) starts a retrain and polls its progress and result. */
import {
  BarController,
  BarElement,
  CategoryScale,
  Chart,
  Legend,
  LinearScale,
  LineController,
  LineElement,
  PointElement,
  Title,
  Tooltip,
  type ChartConfiguration,
} from 'chart.js';
import { ApiError, getProjectModel, listRetrainJobs, startRetrain } from './api';
import { chartSpecs, type ChartSpec, type StatsByGroup } from './lib/dashboardCharts';
import { activeJob, retrainRow, type RetrainJob } from './lib/retrain';

Chart.register(BarController, BarElement, CategoryScale, LinearScale, LineController, LineElement, PointElement, Legend, Title, Tooltip);

declare global {
  interface Window {
    /** For tests: the specs the charts were drawn from. */
    __dashboardCharts: ChartSpec[];
  }
}

function config(spec: ChartSpec): ChartConfiguration {
  const hasLine = spec.series.some((s) => s.type === 'line');
  return {
    type: 'bar',
    data: {
      labels: spec.labels,
      datasets: spec.series.map((s) => ({
        type: s.type,
        label: s.label,
        data: s.data,
        backgroundColor: s.color,
        borderColor: s.color,
        yAxisID: s.type === 'line' ? 'y2' : 'y',
      })),
    } as ChartConfiguration['data'],
    options: {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      plugins: { title: { display: true, text: spec.title }, legend: { position: 'bottom' } },
      scales: {
        y: { beginAtZero: true, max: spec.yMax, title: { display: true, text: spec.yTitle } },
        ...(hasLine ? { y2: { beginAtZero: true, position: 'right' as const, grid: { drawOnChartArea: false }, title: { display: true, text: spec.y2Title ?? '' } } } : {}),
      },
    },
  };
}

const dataEl = document.getElementById('stats-data');
if (!dataEl?.textContent) throw new Error('dashboard: #stats-data missing');
const specs = chartSpecs(JSON.parse(dataEl.textContent) as StatsByGroup);
window.__dashboardCharts = specs;
let drawn = 0;
for (const spec of specs) {
  const canvas = document.getElementById(spec.id);
  if (!(canvas instanceof HTMLCanvasElement)) throw new Error(`dashboard: canvas #${spec.id} missing`);
  if (!spec.labels.length) {
    canvas.replaceWith(Object.assign(document.createElement('p'), { className: 'muted', textContent: `${spec.title}: no data yet.` }));
    continue;
  }
  new Chart(canvas, config(spec));
  canvas.dataset['drawn'] = 'true';
  drawn++;
}
document.body.dataset['chartsDrawn'] = String(drawn);

// ---------------------------------------------------------------- the "Model" panel (managers, admins)

const POLL_MS = 2000;

function cell(text: string, className = ''): HTMLTableCellElement {
  const td = document.createElement('td');
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function drawJobs(body: HTMLTableSectionElement, jobs: RetrainJob[]): void {
  body.replaceChildren();
  if (!jobs.length) {
    const tr = document.createElement('tr');
    const td = cell('No retraining yet.', 'muted');
    td.colSpan = 7;
    tr.append(td);
    body.append(tr);
    return;
  }
  for (const job of jobs.slice(0, 5)) {
    const row = retrainRow(job);
    const tr = document.createElement('tr');
    tr.dataset['jobId'] = String(row.id);
    tr.dataset['status'] = row.status;
    tr.append(cell(`#${row.id}`), cell(`${row.started} ${row.by}`), cell(row.masks, 'num'), cell(row.noc85, 'num'),
      cell(row.noc90, 'num'), cell(row.decision, `decision decision-${job.decision ?? row.status}`), cell(row.detail, 'muted detail'));
    body.append(tr);
  }
}

async function initModelPanel(panel: HTMLElement): Promise<void> {
  const projectId = Number(panel.dataset['projectId']);
  const button = panel.querySelector<HTMLButtonElement>('#retrain-start');
  const status = panel.querySelector<HTMLElement>('#retrain-status');
  const bar = panel.querySelector<HTMLProgressElement>('#retrain-progress');
  const body = panel.querySelector<HTMLTableSectionElement>('#retrain-jobs tbody');
  const current = panel.querySelector<HTMLElement>('#model-current');
  if (!button || !status || !bar || !body || !current) throw new Error('dashboard: model panel incomplete');
  let timer: number | undefined;

  const showError = (e: unknown): void => {
    status.textContent = e instanceof ApiError ? e.message : String(e);
    status.dataset['state'] = 'error';
  };

  const refresh = async (): Promise<void> => {
    const jobs = await listRetrainJobs(projectId);
    drawJobs(body, jobs);
    const active = activeJob(jobs);
    button.disabled = active !== null;
    bar.hidden = active === null;
    if (active) {
      bar.value = active.progress;
      status.textContent = `Job #${active.id}: ${active.phase || active.status} (${Math.round(active.progress * 100)}%)`;
      status.dataset['state'] = 'running';
      timer = window.setTimeout(() => void refresh().catch(showError), POLL_MS);
    } else if (timer !== undefined || status.dataset['state'] === 'running') {
      timer = undefined;
      const model = await getProjectModel(projectId);  // a promoted job switched the project
      current.textContent = model.model_version.name;
      current.dataset['modelId'] = model.model_version.model_id;
      const currentId = panel.querySelector<HTMLElement>('#model-current-id');
      if (currentId) currentId.textContent = model.model_version.model_id;
      const last = jobs[0];
      status.textContent = last ? `Job #${last.id}: ${retrainRow(last).decision}` : '';
      status.dataset['state'] = 'finished';
    }
  };

  button.addEventListener('click', () => {
    button.disabled = true;
    status.textContent = 'Starting…';
    status.dataset['state'] = 'running';
    startRetrain(projectId)
      .then(() => refresh())
      .catch((e: unknown) => {
        button.disabled = false;
        showError(e);
      });
  });
  await refresh();
  panel.dataset['ready'] = 'true';
}

const modelPanel = document.getElementById('model-panel');
if (modelPanel) {
  initModelPanel(modelPanel).catch((e: unknown) => {
    const status = document.getElementById('retrain-status');
    if (status) status.textContent = e instanceof Error ? e.message : String(e);
  });
}
