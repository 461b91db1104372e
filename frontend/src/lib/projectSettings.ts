/**
 * The project settings page as plain data (settings.ts draws it): the body of
 * `PATCH /api/projects/<id>/` for the name and labels (existing labels by id, so masks keep
 * them), the pre-fill parameters and where the API's errors go, progress texts, and which
 * member roles a user may set. Pure, so all of it is unit-tested.
 *
 * Label rows reuse the "New project" form's rules (lib/projectForm.ts): the same row shape,
 * the same repeated-name check and the same mapping of the API's errors to rows.
 */
import { duplicateCategoryRows, projectFormErrors, type CategoryRow, type ProjectFormErrors } from './projectForm';

/** One label row of the General section. */
export interface LabelRow extends CategoryRow {
  /** The stored label's id; null for a row added on the page and not saved yet. */
  id: number | null;
  /** The stored name and colour (null for a new row): only changes are sent. */
  saved: CategoryRow | null;
}

/** An item of `categories` in `PATCH /api/projects/<id>/` (docs/api.md "Projects"). */
export type CategoryChange = { name: string; color: string } | { id: number; name?: string; color?: string };

export interface ProjectUpdateBody {
  name: string;
  categories: CategoryChange[];
}

export interface GeneralRequest {
  body: ProjectUpdateBody;
  /** rows[i]: the page row that body.categories[i] came from. */
  rows: number[];
}

/**
 * What the General section sends: the name as typed (the server trims and judges it), every
 * stored label whose name or colour changed (`{id, name?, color?}`: only what changed), and
 * every new row with a name (`{name, color}`). New rows left blank are not sent; a stored
 * label's name emptied is sent, for the server to refuse next to its row.
 */
export function generalRequest(name: string, rows: LabelRow[]): GeneralRequest {
  const categories: CategoryChange[] = [];
  const sent: number[] = [];
  rows.forEach((row, i) => {
    const rowName = row.name.trim();
    if (row.id === null || row.saved === null) {
      if (!rowName) return;
      categories.push({ name: rowName, color: row.color });
    } else {
      const change: { id: number; name?: string; color?: string } = { id: row.id };
      if (rowName !== row.saved.name) change.name = rowName;
      if (row.color.toLowerCase() !== row.saved.color.toLowerCase()) change.color = row.color;
      if (change.name === undefined && change.color === undefined) return;
      categories.push(change);
    }
    sent.push(i);
  });
  return { body: { name, categories }, rows: sent };
}

/** Whether anything of the General section differs from what is stored. */
export function generalChanged(name: string, savedName: string, rows: LabelRow[]): boolean {
  return name.trim() !== savedName || generalRequest(name, rows).body.categories.length > 0;
}

/**
 * Rows whose name repeats an earlier row's, stored or new (the server refuses the same,
 * item by item; asking first keeps the user's colours). Same messages as the New project form.
 */
export function duplicateLabelRows(rows: LabelRow[]): Map<number, string[]> {
  return duplicateCategoryRows(rows);
}

/** The API's 400 for the General section, by field and page row (lib/projectForm.ts's sorting). */
export function generalErrors(body: unknown, rows: number[], fallback: string): ProjectFormErrors {
  return projectFormErrors(body, rows, fallback);
}

/** What `DELETE /api/projects/<id>/categories/<cid>/` refused, in words for the label's row. */
export function deleteRefusal(status: number, body: unknown, fallback: string): string {
  const detail = body && typeof body === 'object' && !Array.isArray(body) ? (body as { detail?: unknown }).detail : null;
  if (typeof detail === 'string' && detail) return detail;
  if (status === 404) return 'This label no longer exists: reload the page.';
  return fallback;
}

/** "3 masks", "1 mask", "unused": how many saved masks carry a label. */
export function maskUsage(masks: number): string {
  if (masks <= 0) return 'unused';
  return `${masks} mask${masks === 1 ? '' : 's'}`;
}

// ------------------------------------------------------------ pre-fill

/** One generator parameter input of the Pre-fill section. */
export interface ParamInput {
  name: string;
  kind: 'int' | 'float';
  /** The input's text. */
  raw: string;
}

export interface ParamsRequest {
  params: Record<string, number>;
  /** Inputs that are not numbers at all, not sent: name -> messages. */
  errors: Map<string, string[]>;
}

/**
 * The `params` of `PATCH /api/projects/<id>/prefill`: every input as a number. Ranges and
 * integer-ness are the server's to judge (its message names the range); only an input that
 * is not a number at all (empty) is stopped here.
 */
export function paramsRequest(inputs: ParamInput[]): ParamsRequest {
  const params: Record<string, number> = {};
  const errors = new Map<string, string[]>();
  for (const input of inputs) {
    const text = input.raw.trim();
    const value = Number(text);
    if (!text || !Number.isFinite(value)) errors.set(input.name, ['Enter a number.']);
    else params[input.name] = value;
  }
  return { params, errors };
}

/** A stored parameter as its input shows it: exactly (a rounded one sent back would change it). */
export function paramText(value: unknown): string {
  return typeof value === 'number' && Number.isFinite(value) ? String(value) : '';
}

export interface PrefillErrors {
  /** Parameter name -> messages. */
  params: Map<string, string[]>;
  enabled: string[];
  /** `params.non_field_errors` (e.g. a crop grid with no points), `detail`, anything else. */
  other: string[];
}

function messages(v: unknown): string[] {
  if (Array.isArray(v)) return v.flatMap(messages);
  if (v && typeof v === 'object') return Object.values(v as Record<string, unknown>).flatMap(messages);
  return v === null || v === undefined ? [] : [String(v)];
}

/**
 * Sorts an error answer of `PATCH /api/projects/<id>/prefill`:
 * `{"params": {"<name>": [msgs], "non_field_errors": [msgs]}}`, `{"params": [msgs]}`,
 * `{"enabled": [msgs]}` or `{"detail"}` (403, network).
 */
export function prefillErrors(body: unknown, fallback: string): PrefillErrors {
  const out: PrefillErrors = { params: new Map(), enabled: [], other: [] };
  if (body && typeof body === 'object' && !Array.isArray(body)) {
    for (const [key, value] of Object.entries(body as Record<string, unknown>)) {
      if (key === 'params' && value && typeof value === 'object' && !Array.isArray(value)) {
        for (const [name, msgs] of Object.entries(value as Record<string, unknown>)) {
          if (name === 'non_field_errors') out.other.push(...messages(msgs));
          else out.params.set(name, [...(out.params.get(name) ?? []), ...messages(msgs)]);
        }
      } else if (key === 'enabled') out.enabled.push(...messages(value));
      else out.other.push(...messages(value));
    }
  } else if (typeof body === 'string' && body.trim() && !body.trimStart().startsWith('<')) out.other.push(body.trim().slice(0, 300));
  if (!out.params.size && !out.enabled.length && !out.other.length) out.other.push(fallback);
  return out;
}

export type ImageCounts = Partial<Record<'none' | 'pending' | 'running' | 'ready' | 'failed', number>>;
export type ProposalCounts = Partial<Record<'pending' | 'accepted' | 'edited' | 'rejected', number>>;

export interface PrefillProgress {
  text: string;
  /** Images queued or being generated: worth polling. */
  busy: boolean;
  ready: number;
  images: number;
}

/** The project's pre-fill progress in one line (`GET /api/projects/<id>/prefill` counts). */
export function prefillProgress(enabled: boolean, images: ImageCounts, proposals: ProposalCounts): PrefillProgress {
  const n = (k: keyof ImageCounts) => images[k] ?? 0;
  const total = n('none') + n('pending') + n('running') + n('ready') + n('failed');
  const queued = n('pending') + n('running');
  const parts = [`${n('ready')} of ${total} image${total === 1 ? '' : 's'} pre-filled`];
  if (n('running')) parts.push(`${n('running')} running`);
  if (n('pending')) parts.push(`${n('pending')} queued`);
  if (n('failed')) parts.push(`${n('failed')} failed`);
  if (n('none') && total) parts.push(`${n('none')} not pre-filled${enabled ? ' yet' : ''}`);
  const p = (k: keyof ProposalCounts) => proposals[k] ?? 0;
  const text = `${parts.join(', ')} · proposals: ${p('pending')} to review, ${p('accepted')} accepted, `
    + `${p('edited')} edited, ${p('rejected')} rejected${enabled ? '' : ' · pre-fill is off'}`;
  return { text, busy: queued > 0, ready: n('ready'), images: total };
}

// ------------------------------------------------------------ model

export interface EmbeddingCounts {
  model_id: string;
  images: number;
  embedded: number;
  pending: number;
  failed: number;
  done: boolean;
}

/** The re-embedding progress of the project's version, as a fraction and a line. */
export function embeddingProgress(e: EmbeddingCounts): { fraction: number; text: string; done: boolean } {
  const fraction = e.images ? Math.min(1, e.embedded / e.images) : 1;
  let text = `${e.embedded} of ${e.images} image${e.images === 1 ? '' : 's'} embedded with ${e.model_id}`;
  if (e.failed) text += `, ${e.failed} failed`;
  text += e.done ? ' · done' : ` · ${e.pending} pending`;
  return { fraction, text, done: e.done };
}

export interface VersionOption {
  /** '' = follow the server's default; else the version's id. */
  value: string;
  label: string;
}

export interface VersionInfo {
  id?: number;
  model_id: string;
  name: string;
  source?: string;
}

/**
 * The model select's options: following the server's default (the first version of
 * `GET /api/models/`), then the other versions; the project's own version is always among
 * them (also when it is the default's, pinned, or no longer offered).
 *
 * @returns the options and the value the project is at now.
 */
export function versionOptions(models: VersionInfo[], current: VersionInfo & { id: number }, followsDefault: boolean): {
  options: VersionOption[];
  selected: string;
} {
  const describe = (m: VersionInfo) => `${m.name} (${m.model_id}${m.source ? `, ${m.source}` : ''})`;
  const [first, ...others] = models;
  const options: VersionOption[] = [];
  if (first) options.push({ value: '', label: `Server default: ${describe(first)}` });
  for (const m of others) if (m.id !== undefined) options.push({ value: String(m.id), label: describe(m) });
  const selected = followsDefault ? '' : String(current.id);
  if (!options.some((o) => o.value === selected)) options.push({ value: selected, label: `${describe(current)} (current)` });
  return { options, selected };
}

// ------------------------------------------------------------ members

export type Role = 'admin' | 'manager' | 'reviewer' | 'annotator';

export interface MemberInfo {
  user: number;
  username: string;
  role: Role;
}

/** Whether the page lets this user change or remove `member` (the admin role needs `administer`). */
export function memberEditable(member: MemberInfo, mayAdminister: boolean): boolean {
  return mayAdminister || member.role !== 'admin';
}

/** The roles offered for `member` (its own always among them, so the select shows it). */
export function roleChoices(member: MemberInfo | null, roles: Role[]): Role[] {
  return member && !roles.includes(member.role) ? [member.role, ...roles] : roles;
}

/** Whether `member` is the project's only admin (the server refuses to demote or remove them). */
export function isLastAdmin(member: MemberInfo, members: MemberInfo[]): boolean {
  return member.role === 'admin' && members.filter((m) => m.role === 'admin').length === 1;
}
