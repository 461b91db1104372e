/** Entry point of the annotate page: reads the template's #app data attributes and starts. */
import './styles.css';
import { AnnotateApp } from './app';
import { accessFromDataset } from './lib/access';

function intOrNull(v: string | undefined | null): number | null {
  const n = v ? Number.parseInt(v, 10) : NaN;
  return Number.isFinite(n) ? n : null;
}

const el = document.getElementById('app');
if (!el) throw new Error('annotate page: #app element missing');
const projectId = intOrNull(el.dataset['projectId']);
if (projectId === null) throw new Error('annotate page: data-project-id missing');
const fromQuery = intOrNull(new URLSearchParams(window.location.search).get('image'));
const app = new AnnotateApp(el, {
  projectId,
  imageId: intOrNull(el.dataset['imageId']) ?? fromQuery,
  apiRoot: el.dataset['apiRoot'] || '/api/',
  access: accessFromDataset(el.dataset),
});
void app.start();
