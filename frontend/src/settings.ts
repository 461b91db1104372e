/** Entry point of a project's settings page (`/projects/<id>/settings/`): each section the
 * template rendered (the server shows a section only to roles whose action allows it) is a
 * form over the API, with the server's errors next to their fields:
 * - General: name and labels (`PATCH /api/projects/<id>/`, labels by id so masks keep them;
 *   `DELETE .../categories/<cid>/`, refused while masks carry the label);
 * - Pre-fill: on/off and the generator's parameters (`GET|PATCH .../prefill`), progress,
 *   "Run pre-fill now" (`POST .../prefill/run`);
 * - Model: the version and the re-embedding after a switch (`GET|PATCH .../model`);
 * - Members: list, add by username, change role, remove (`.../members/`).
 * The logic is in lib/projectSettings.ts (and lib/projectForm.ts for the label rows). */
import {
  addMember,
  ApiError,
  deleteCategory,
  getPrefill,
  getProjectModel,
  listMembers,
  listModels,
  removeMember,
  runPrefill,
  setApiRoot,
  setProjectModel,
  updateMember,
  updatePrefill,
  updateProject,
  type Category,
  type PrefillState,
  type ProjectModel,
} from './api';
import { nextCategoryColor } from './lib/projectForm';
import {
  deleteRefusal,
  duplicateLabelRows,
  embeddingProgress,
  generalErrors,
  generalRequest,
  isLastAdmin,
  maskUsage,
  memberEditable,
  paramsRequest,
  paramText,
  prefillErrors,
  prefillProgress,
  roleChoices,
  versionOptions,
  type LabelRow,
  type MemberInfo,
  type Role,
} from './lib/projectSettings';

declare global {
  interface Window {
    /** For tests: the body of the last General save. */
    __settingsLastBody?: unknown;
  }
}

function el<T extends HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (!found) throw new Error(`settings page: #${id} missing from the page`);
  return found as T;
}

function maybe<T extends HTMLElement>(id: string): T | null {
  return document.getElementById(id) as T | null;
}

function showList(ul: Element | null, messages: string[]): void {
  if (!ul) return;
  ul.replaceChildren(...messages.map((m) => Object.assign(document.createElement('li'), { textContent: m })));
}

function say(target: HTMLElement, text: string, tone: 'ok' | 'bad' | '' = ''): void {
  target.textContent = text;
  if (tone) target.dataset['tone'] = tone;
  else delete target.dataset['tone'];
}

function errorText(e: unknown): string {
  return e instanceof ApiError ? e.message : (e as Error).message;
}

function jsonScript<T>(id: string, fallback: T): T {
  const node = document.getElementById(id);
  return node?.textContent ? (JSON.parse(node.textContent) as T) : fallback;
}

const root = el<HTMLElement>('settings-page');
setApiRoot(root.dataset['apiRoot'] ?? '/api/');
const projectId = Number(root.dataset['projectId']);
if (!Number.isInteger(projectId) || projectId < 1) throw new Error(`settings page: bad data-project-id ${root.dataset['projectId']}`);
const mayAdminister = root.dataset['mayAdminister'] === 'true';
const userId = Number(root.dataset['userId']);

/** Sections still loading (root's data-ready turns true at 0: for tests). */
let loading = 0;
function started(): void {
  loading++;
  root.dataset['ready'] = 'false';
}
function finished(): void {
  loading = Math.max(0, loading - 1);
  if (!loading) root.dataset['ready'] = 'true';
}

// ------------------------------------------------------------ General: name and labels

function setupGeneral(form: HTMLFormElement): void {
  const palette = jsonScript<string[]>('category-palette', []);
  const usage = new Map<number, number>();
  const nameInput = el<HTMLInputElement>('project-name');
  const rowsList = el<HTMLOListElement>('category-rows');
  const save = el<HTMLButtonElement>('general-save');
  const status = el<HTMLElement>('general-status');
  const title = el<HTMLElement>('settings-project-name');
  let savedName = nameInput.value;
  /** The stored label of each row element (absent: a new row). */
  const stored = new WeakMap<HTMLLIElement, Category>();

  function rowElements(): HTMLLIElement[] {
    return [...rowsList.querySelectorAll<HTMLLIElement>('li.category-row')];
  }

  function rowValues(): LabelRow[] {
    return rowElements().map((li) => {
      const label = stored.get(li);
      return {
        id: label ? label.id : null,
        saved: label ? { name: label.name, color: label.color } : null,
        name: li.querySelector<HTMLInputElement>('input.category-name')?.value ?? '',
        color: li.querySelector<HTMLInputElement>('input.category-color')?.value ?? '#000000',
      };
    });
  }

  function addRow(label: Category | null): HTMLLIElement {
    const li = document.createElement('li');
    li.className = `category-row ${label ? 'stored-row' : 'new-row'}`;
    const color = document.createElement('input');
    color.type = 'color';
    color.className = 'category-color';
    color.title = 'Colour';
    color.value = label ? label.color : nextCategoryColor(rowValues(), palette.length ? palette : ['#e6194b']);
    const text = document.createElement('input');
    text.type = 'text';
    text.className = 'category-name';
    text.placeholder = 'label name, e.g. car';
    text.maxLength = 200; // the server's limit is 100: longer names get its error next to the row
    text.value = label ? label.name : '';
    const used = document.createElement('span');
    used.className = 'category-usage';
    const remove = document.createElement('button');
    remove.type = 'button';
    const errors = document.createElement('ul');
    errors.className = 'errorlist field-errors';
    if (label) {
      stored.set(li, label);
      li.dataset['categoryId'] = String(label.id);
      const masks = usage.get(label.id) ?? 0;
      used.textContent = maskUsage(masks);
      used.dataset['masks'] = String(masks);
      remove.className = 'category-delete danger';
      remove.textContent = 'Delete';
      remove.title = 'Delete this label (refused while saved masks carry it)';
      remove.addEventListener('click', () => void deleteRow(li, remove, errors));
    } else {
      used.textContent = 'new';
      remove.className = 'category-remove';
      remove.textContent = 'Remove';
      remove.addEventListener('click', () => li.remove());
    }
    li.append(color, text, used, remove, errors);
    rowsList.append(li);
    return li;
  }

  async function deleteRow(li: HTMLLIElement, button: HTMLButtonElement, errors: HTMLUListElement): Promise<void> {
    const label = stored.get(li);
    if (!label) return;
    if (!window.confirm(`Delete the label "${label.name}"?`)) return;
    button.disabled = true;
    showList(errors, []);
    try {
      await deleteCategory(projectId, label.id);
      li.remove();
      say(status, `Label "${label.name}" deleted.`, 'ok');
    } catch (e) {
      const err = e instanceof ApiError ? e : null;
      const message = err ? deleteRefusal(err.status, err.body, err.message) : errorText(e);
      showList(errors, [message]);
      li.classList.add('invalid');
      button.disabled = false;
    }
  }

  function render(categories: Category[]): void {
    rowsList.replaceChildren();
    for (const c of categories) addRow(c);
  }

  function showErrors(errors: ReturnType<typeof generalErrors> | null): void {
    showList(form.querySelector('[data-errors-for="name"]'), errors ? errors.name : []);
    showList(form.querySelector('[data-errors-for="categories"]'), errors ? errors.categories : []);
    showList(el('general-errors'), errors ? [...errors.other, ...errors.model_version, ...errors.prefill_enabled] : []);
    rowElements().forEach((li, i) => {
      const msgs = errors?.categoryRows.get(i) ?? [];
      li.classList.toggle('invalid', msgs.length > 0);
      showList(li.querySelector('ul.field-errors'), msgs);
    });
    nameInput.classList.toggle('invalid', !!errors?.name.length);
  }

  async function submit(): Promise<void> {
    const rows = rowValues();
    const repeated = duplicateLabelRows(rows);
    if (repeated.size) {
      showErrors({ name: [], model_version: [], prefill_enabled: [], categories: [], categoryRows: repeated, other: [] });
      form.querySelector<HTMLElement>('li.invalid input.category-name')?.focus();
      return;
    }
    const request = generalRequest(nameInput.value, rows);
    window.__settingsLastBody = request.body;
    save.disabled = true;
    say(status, 'Saving…');
    showErrors(null);
    try {
      const project = await updateProject(projectId, request.body);
      savedName = project.name;
      nameInput.value = project.name;
      title.textContent = project.name;
      document.title = `Settings · ${project.name}`;
      render(project.categories);
      say(status, 'Saved.', 'ok');
    } catch (e) {
      const err = e instanceof ApiError ? e : null;
      showErrors(generalErrors(err ? err.body : null, request.rows, errorText(e)));
      say(status, 'Not saved: see the messages above.', 'bad');
      form.querySelector<HTMLElement>('input.invalid, li.invalid input.category-name')?.focus();
    } finally {
      save.disabled = false;
    }
  }

  for (const c of jsonScript<(Category & { masks: number })[]>('project-categories', [])) usage.set(c.id, c.masks);
  render(jsonScript<Category[]>('project-categories', []));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    void submit();
  });
  el<HTMLButtonElement>('add-category').addEventListener('click', () => {
    addRow(null).querySelector<HTMLInputElement>('input.category-name')?.focus();
  });
  nameInput.addEventListener('input', () => say(status, nameInput.value.trim() !== savedName ? 'Unsaved changes.' : ''));
}

// ------------------------------------------------------------ Pre-fill

function setupPrefill(form: HTMLFormElement): void {
  const enabled = el<HTMLInputElement>('prefill-enabled');
  const inputs = [...form.querySelectorAll<HTMLInputElement>('input.param-input')];
  const save = el<HTMLButtonElement>('prefill-save');
  const status = el<HTMLElement>('prefill-status');
  const progress = el<HTMLElement>('prefill-progress');
  const run = el<HTMLButtonElement>('prefill-run');
  const runStatus = el<HTMLElement>('prefill-run-status');
  let timer: ReturnType<typeof setTimeout> | null = null;
  let pollRound = 0;

  function fill(state: PrefillState): void {
    enabled.checked = state.enabled;
    for (const input of inputs) {
      input.value = paramText(state.params[input.dataset['param'] ?? '']);
      input.disabled = false;
    }
    save.disabled = false;
  }

  function showProgress(state: PrefillState): void {
    const p = prefillProgress(state.enabled, state.images, state.proposals);
    progress.textContent = p.text;
    progress.dataset['busy'] = String(p.busy);
    progress.dataset['ready'] = String(p.ready);
    progress.dataset['images'] = String(p.images);
    progress.dataset['enabled'] = String(state.enabled);
    if (timer !== null) clearTimeout(timer);
    timer = null;
    if (p.busy) timer = setTimeout(() => void poll(), Math.min(10_000, 1500 * 2 ** Math.min(pollRound++, 3)));
  }

  async function poll(): Promise<void> {
    timer = null;
    try {
      showProgress(await getPrefill(projectId));
    } catch (e) {
      progress.textContent = `Could not refresh the progress (${errorText(e)}); trying again.`;
      timer = setTimeout(() => void poll(), 10_000);
    }
  }

  function showErrors(errors: ReturnType<typeof prefillErrors> | null, local: Map<string, string[]> = new Map()): void {
    for (const input of inputs) {
      const name = input.dataset['param'] ?? '';
      const msgs = [...(local.get(name) ?? []), ...(errors?.params.get(name) ?? [])];
      input.classList.toggle('invalid', msgs.length > 0);
      showList(form.querySelector(`[data-errors-for="params.${name}"]`), msgs);
    }
    showList(form.querySelector('[data-errors-for="enabled"]'), errors ? errors.enabled : []);
    // Errors about parameters the page does not show (none today) go with the others.
    const shown = new Set(inputs.map((i) => i.dataset['param'] ?? ''));
    const unshown = errors ? [...errors.params].filter(([n]) => !shown.has(n)).flatMap(([n, m]) => m.map((x) => `${n}: ${x}`)) : [];
    showList(el('prefill-errors'), [...(errors ? errors.other : []), ...unshown]);
    const firstBad = inputs.find((i) => i.classList.contains('invalid'));
    if (firstBad && firstBad.closest('details')) (firstBad.closest('details') as HTMLDetailsElement).open = true;
  }

  async function submit(): Promise<void> {
    const request = paramsRequest(inputs.map((i) => ({
      name: i.dataset['param'] ?? '', kind: i.dataset['kind'] === 'int' ? 'int' : 'float', raw: i.value,
    })));
    if (request.errors.size) {
      showErrors(null, request.errors);
      say(status, 'Not saved: see the messages above.', 'bad');
      form.querySelector<HTMLElement>('input.invalid')?.focus();
      return;
    }
    save.disabled = true;
    say(status, 'Saving…');
    showErrors(null);
    try {
      const state = await updatePrefill(projectId, { enabled: enabled.checked, params: request.params });
      fill(state);
      showProgress(state);
      say(status, 'Saved.', 'ok');
    } catch (e) {
      const err = e instanceof ApiError ? e : null;
      showErrors(prefillErrors(err ? err.body : null, errorText(e)));
      say(status, 'Not saved: see the messages above.', 'bad');
      form.querySelector<HTMLElement>('input.invalid')?.focus();
    } finally {
      save.disabled = false;
    }
  }

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    void submit();
  });
  run.addEventListener('click', async () => {
    run.disabled = true;
    say(runStatus, 'Queueing…');
    try {
      const { queued } = await runPrefill(projectId);
      say(runStatus, queued ? `${queued} image${queued === 1 ? '' : 's'} queued.`
        : 'Nothing to queue: no embedded image that is not queued already.', 'ok');
      pollRound = 0;
      await poll();
    } catch (e) {
      say(runStatus, `Not queued: ${errorText(e)}`, 'bad');
    } finally {
      run.disabled = false;
    }
  });

  started();
  getPrefill(projectId)
    .then((state) => {
      fill(state);
      showProgress(state);
    })
    .catch((e) => {
      progress.textContent = '';
      say(status, `Could not load the pre-fill settings: ${errorText(e)}`, 'bad');
    })
    .finally(finished);
}

// ------------------------------------------------------------ Model

function setupModel(): void {
  const select = el<HTMLSelectElement>('model-select');
  const switchBtn = el<HTMLButtonElement>('model-switch');
  const status = el<HTMLElement>('model-status');
  const current = el<HTMLElement>('model-current');
  const currentId = el<HTMLElement>('model-current-id');
  const follows = el<HTMLElement>('model-follows');
  const bar = el<HTMLProgressElement>('model-progress');
  const barText = el<HTMLElement>('model-progress-text');
  const errors = el<HTMLUListElement>('model-errors');
  let selected = '';
  let timer: ReturnType<typeof setTimeout> | null = null;
  let pollRound = 0; // 2, 4, 8, 15, 15… s: an image that stays pending is not asked about every 2 s for ever

  function showModel(model: ProjectModel): void {
    current.textContent = model.model_version.name;
    current.dataset['modelId'] = model.model_version.model_id;
    currentId.textContent = model.model_version.model_id;
    follows.textContent = model.follows_default ? "(the server's default)" : '';
    const p = embeddingProgress(model.embeddings);
    bar.value = p.fraction;
    barText.textContent = p.text;
    barText.dataset['done'] = String(p.done);
    barText.dataset['modelId'] = model.embeddings.model_id;
    if (timer !== null) clearTimeout(timer);
    timer = p.done ? null : setTimeout(() => void poll(), Math.min(15_000, 2000 * 2 ** Math.min(pollRound++, 3)));
  }

  async function poll(): Promise<void> {
    timer = null;
    try {
      showModel(await getProjectModel(projectId));
    } catch (e) {
      barText.textContent = `Could not refresh the progress (${errorText(e)}); trying again.`;
      timer = setTimeout(() => void poll(), 10_000);
    }
  }

  function fillSelect(models: Parameters<typeof versionOptions>[0], model: ProjectModel): void {
    const { options, selected: now } = versionOptions(models, model.model_version, model.follows_default);
    select.replaceChildren(...options.map((o) => new Option(o.label, o.value)));
    select.value = now;
    selected = now;
    select.disabled = false;
    switchBtn.disabled = true;
  }

  select.addEventListener('change', () => {
    switchBtn.disabled = select.value === selected;
  });
  switchBtn.addEventListener('click', async () => {
    switchBtn.disabled = true;
    select.disabled = true;
    showList(errors, []);
    say(status, 'Switching…');
    try {
      const model = await setProjectModel(projectId, select.value ? Number(select.value) : null);
      selected = select.value;
      pollRound = 0;
      showModel(model);
      say(status, model.embeddings.done ? 'Switched.' : 'Switched: embedding the images again…', 'ok');
    } catch (e) {
      const err = e instanceof ApiError ? e : null;
      const fields = err ? Object.values(err.fieldErrors).flat() : [];
      showList(errors, fields.length ? fields : [errorText(e)]);
      say(status, 'Not switched.', 'bad');
      select.value = selected;
    } finally {
      select.disabled = false;
      switchBtn.disabled = select.value === selected;
    }
  });

  started();
  Promise.all([getProjectModel(projectId), listModels()])
    .then(([model, models]) => {
      showModel(model);
      fillSelect(models, model);
    })
    .catch((e) => {
      select.replaceChildren(new Option('(could not list the versions)', ''));
      showList(errors, [`Could not load the model versions: ${errorText(e)}`]);
    })
    .finally(finished);
}

// ------------------------------------------------------------ Members

function setupMembers(form: HTMLFormElement): void {
  const roles = jsonScript<Role[]>('member-roles', ['manager', 'reviewer', 'annotator']);
  const tbody = el<HTMLTableSectionElement>('member-rows');
  const username = el<HTMLInputElement>('member-username');
  const roleSelect = el<HTMLSelectElement>('member-role');
  const add = el<HTMLButtonElement>('member-add');
  const status = el<HTMLElement>('member-status');
  const listErrors = el<HTMLUListElement>('members-errors');
  let members: MemberInfo[] = [];

  function fieldMessages(e: unknown): string[] {
    if (e instanceof ApiError) {
      const fields = Object.values(e.fieldErrors).flat();
      return fields.length ? fields : [e.message];
    }
    return [errorText(e)];
  }

  function render(): void {
    tbody.replaceChildren(...members.map((m) => row(m)));
  }

  function row(member: MemberInfo): HTMLTableRowElement {
    const tr = document.createElement('tr');
    tr.className = 'member-row';
    tr.dataset['username'] = member.username;
    tr.dataset['userId'] = String(member.user);
    tr.dataset['role'] = member.role;
    const name = document.createElement('td');
    name.className = 'member-name';
    name.textContent = member.user === userId ? `${member.username} (you)` : member.username;
    const roleCell = document.createElement('td');
    const actions = document.createElement('td');
    const errors = document.createElement('ul');
    errors.className = 'errorlist field-errors';
    if (memberEditable(member, mayAdminister)) {
      const select = document.createElement('select');
      select.className = 'member-role';
      select.setAttribute('aria-label', `Role of ${member.username}`);
      for (const r of roleChoices(member, roles)) select.append(new Option(r, r, false, r === member.role));
      select.value = member.role;
      select.addEventListener('change', () => void changeRole(member, select, errors));
      const remove = document.createElement('button');
      remove.type = 'button';
      remove.className = 'member-remove danger';
      remove.textContent = 'Remove';
      remove.addEventListener('click', () => void removeRow(member, remove, errors));
      if (isLastAdmin(member, members)) {
        const hint = 'The project\'s only admin: make someone else admin first.';
        select.title = hint;
        remove.title = hint;
      }
      roleCell.append(select, errors);
      actions.append(remove);
    } else {
      roleCell.append(Object.assign(document.createElement('span'), {
        className: 'member-role-text', textContent: member.role, title: 'Only an admin may change an admin.',
      }));
    }
    tr.append(name, roleCell, actions);
    return tr;
  }

  async function changeRole(member: MemberInfo, select: HTMLSelectElement, errors: HTMLUListElement): Promise<void> {
    const role = select.value as Role;
    select.disabled = true;
    showList(errors, []);
    try {
      const updated = await updateMember(projectId, member.user, role);
      members = members.map((m) => (m.user === updated.user ? updated : m));
      render();
      say(status, `${updated.username} is now ${updated.role}.`, 'ok');
    } catch (e) {
      select.value = member.role; // the server kept the role it had
      select.disabled = false;
      showList(errors, fieldMessages(e));
      say(status, '');
    }
  }

  async function removeRow(member: MemberInfo, button: HTMLButtonElement, errors: HTMLUListElement): Promise<void> {
    const self = member.user === userId;
    if (!window.confirm(self ? 'Remove yourself from this project? You lose access to it.' : `Remove ${member.username} from this project?`)) return;
    button.disabled = true;
    showList(errors, []);
    try {
      await removeMember(projectId, member.user);
      if (self) {
        window.location.assign('/');
        return;
      }
      members = members.filter((m) => m.user !== member.user);
      render();
      say(status, `${member.username} removed.`, 'ok');
    } catch (e) {
      button.disabled = false;
      showList(errors, fieldMessages(e));
    }
  }

  async function load(): Promise<void> {
    members = await listMembers(projectId);
    render();
  }

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    showList(form.querySelector('[data-errors-for="username"]'), []);
    showList(form.querySelector('[data-errors-for="role"]'), []);
    showList(el('member-add-errors'), []);
    username.classList.remove('invalid');
    const name = username.value.trim();
    if (!name) {
      showList(form.querySelector('[data-errors-for="username"]'), ['Enter the username of an existing user.']);
      username.classList.add('invalid');
      username.focus();
      return;
    }
    add.disabled = true;
    say(status, 'Adding…');
    try {
      const member = await addMember(projectId, name, roleSelect.value as Role);
      members = [...members.filter((m) => m.user !== member.user), member].sort((a, b) => a.username.localeCompare(b.username));
      render();
      username.value = '';
      say(status, `${member.username} added as ${member.role}.`, 'ok');
    } catch (e) {
      say(status, '');
      const err = e instanceof ApiError ? e : null;
      if (err && (err.fieldErrors['username'] || err.fieldErrors['role'])) {
        showList(form.querySelector('[data-errors-for="username"]'), err.fieldErrors['username'] ?? []);
        showList(form.querySelector('[data-errors-for="role"]'), err.fieldErrors['role'] ?? []);
        username.classList.toggle('invalid', !!err.fieldErrors['username']);
      } else showList(el('member-add-errors'), fieldMessages(e));
      username.focus();
    } finally {
      add.disabled = false;
    }
  });

  started();
  load()
    .catch((e) => {
      tbody.replaceChildren();
      showList(listErrors, [`Could not list the members: ${errorText(e)}`]);
    })
    .finally(finished);
}

// ------------------------------------------------------------ start

started();
const general = maybe<HTMLFormElement>('general-form');
if (general) setupGeneral(general);
const prefill = maybe<HTMLFormElement>('prefill-form');
if (prefill) setupPrefill(prefill);
if (maybe('model')) setupModel();
const membersForm = maybe<HTMLFormElement>('member-add-form');
if (membersForm) setupMembers(membersForm);
finished();
