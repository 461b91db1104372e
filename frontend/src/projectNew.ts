/** Entry point of the "New project" page: a form over `POST /api/projects/` (name, label
 * categories with colours, model version from `GET /api/models/`, pre-fill on/off). The API
 * judges the input; its errors are shown next to their fields. On success the browser goes
 * to the new project's upload page. */
import { ApiError, createProject, listModels, setApiRoot, type ModelInfo } from './api';
import { duplicateCategoryRows, nextCategoryColor, projectFormErrors, projectRequest, type CategoryRow, type ProjectFormErrors } from './lib/projectForm';

declare global {
  interface Window {
    /** For tests: the body of the last create request. */
    __projectNewLastBody?: unknown;
  }
}

function el<T extends HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (!found) throw new Error(`project form: #${id} missing from the page`);
  return found as T;
}

const root = el<HTMLElement>('project-new');
setApiRoot(root.dataset['apiRoot'] ?? '/api/');
const uploadUrlTemplate = root.dataset['uploadUrl'] ?? '/projects/0/upload/';
const palette = JSON.parse(el<HTMLScriptElement>('category-palette').textContent ?? '[]') as string[];

const form = el<HTMLFormElement>('project-form');
const nameInput = el<HTMLInputElement>('project-name');
const rowsList = el<HTMLOListElement>('category-rows');
const modelSelect = el<HTMLSelectElement>('project-model');
const prefillInput = el<HTMLInputElement>('project-prefill');
const submit = el<HTMLButtonElement>('project-submit');
const formStatus = el<HTMLElement>('form-status');

function rowValues(): CategoryRow[] {
  return [...rowsList.querySelectorAll<HTMLLIElement>('li.category-row')].map((li) => ({
    name: li.querySelector<HTMLInputElement>('input.category-name')?.value ?? '',
    color: li.querySelector<HTMLInputElement>('input.category-color')?.value ?? '#000000',
  }));
}

function addRow(name = ''): void {
  const li = document.createElement('li');
  li.className = 'category-row';
  const color = document.createElement('input');
  color.type = 'color';
  color.className = 'category-color';
  color.value = nextCategoryColor(rowValues(), palette.length ? palette : ['#e6194b']);
  color.title = 'Colour';
  const text = document.createElement('input');
  text.type = 'text';
  text.className = 'category-name';
  text.placeholder = 'label name, e.g. car';
  text.maxLength = 200; // the server's limit is 100: longer names get its error next to the row
  text.value = name;
  const remove = document.createElement('button');
  remove.type = 'button';
  remove.className = 'category-remove';
  remove.textContent = 'Remove';
  remove.addEventListener('click', () => {
    li.remove();
    if (!rowsList.children.length) addRow();
  });
  const errors = document.createElement('ul');
  errors.className = 'errorlist field-errors';
  li.append(color, text, remove, errors);
  rowsList.append(li);
}

function showList(ul: Element | null, messages: string[]): void {
  if (!ul) return;
  ul.replaceChildren(...messages.map((m) => Object.assign(document.createElement('li'), { textContent: m })));
}

function showErrors(errors: ProjectFormErrors | null): void {
  for (const field of ['name', 'model_version', 'prefill_enabled', 'categories'] as const) {
    showList(form.querySelector(`[data-errors-for="${field}"]`), errors ? errors[field] : []);
  }
  showList(el('form-errors'), errors ? errors.other : []);
  [...rowsList.querySelectorAll<HTMLLIElement>('li.category-row')].forEach((li, i) => {
    const msgs = errors?.categoryRows.get(i) ?? [];
    li.classList.toggle('invalid', msgs.length > 0);
    showList(li.querySelector('ul.field-errors'), msgs);
  });
  nameInput.classList.toggle('invalid', !!errors?.name.length);
  modelSelect.classList.toggle('invalid', !!errors?.model_version.length);
}

function fillModels(models: ModelInfo[]): void {
  const [first, ...others] = models;
  const options: HTMLOptionElement[] = [];
  if (first) options.push(new Option(`Server default: ${first.name} (${first.model_id})`, ''));
  for (const m of others) {
    if (m.id !== undefined) options.push(new Option(`${m.name} (${m.model_id}${m.source ? `, ${m.source}` : ''})`, String(m.id)));
  }
  modelSelect.replaceChildren(...options);
  modelSelect.disabled = false;
}

async function loadModels(): Promise<void> {
  try {
    fillModels(await listModels());
  } catch (e) {
    modelSelect.replaceChildren(new Option('Server default', ''));
    modelSelect.disabled = false;
    showList(form.querySelector('[data-errors-for="model_version"]'), [`Could not list the model versions: ${(e as Error).message}`]);
  }
}

form.addEventListener('submit', (ev) => {
  ev.preventDefault();
  void create();
});
el<HTMLButtonElement>('add-category').addEventListener('click', () => {
  addRow();
  rowsList.querySelector<HTMLInputElement>('li.category-row:last-child input.category-name')?.focus();
});

async function create(): Promise<void> {
  const request = projectRequest({
    name: nameInput.value,
    categories: rowValues(),
    modelVersion: modelSelect.value ? Number(modelSelect.value) : null,
    prefillEnabled: prefillInput.checked,
  });
  const repeated = duplicateCategoryRows(rowValues());
  if (repeated.size) {
    // The API would keep only the first of them (and its colour): ask instead of dropping one.
    showErrors({ name: [], model_version: [], prefill_enabled: [], categories: [], categoryRows: repeated, other: [] });
    form.querySelector<HTMLElement>('li.invalid input.category-name')?.focus();
    return;
  }
  window.__projectNewLastBody = request.body;
  submit.disabled = true;
  formStatus.textContent = 'Creating…';
  showErrors(null);
  try {
    const project = await createProject(request.body);
    formStatus.textContent = 'Created; opening its upload page…';
    window.location.assign(uploadUrlTemplate.replace('/0/', `/${project.id}/`));
  } catch (e) {
    const err = e instanceof ApiError ? e : null;
    showErrors(projectFormErrors(err ? err.body : null, request.rows, (e as Error).message));
    formStatus.textContent = '';
    submit.disabled = false;
    form.querySelector<HTMLElement>('input.invalid, select.invalid, li.invalid input.category-name')?.focus();
  }
}

addRow();
void loadModels();
nameInput.focus();
