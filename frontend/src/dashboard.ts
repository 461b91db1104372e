/** Entry point of the managers' dashboard page: draws the charts of lib/dashboardCharts.ts
 * from the stats the template embeds (#stats-data); the tables are rendered by Django. */
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
import { chartSpecs, type ChartSpec, type StatsByGroup } from './lib/dashboardCharts';

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
