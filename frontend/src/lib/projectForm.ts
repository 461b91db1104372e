/**
 * The "New project" form as plain data: the body it sends to `POST /api/projects/` and where
 * the API's validation errors go (each next to its field, a category's next to its row).
 * Pure, so both are unit-tested; projectNew.ts draws the form.
 */

export interface CategoryRow {
  name: string;
  /** `#rrggbb`, as `<input type="color">` gives it. */
  color: string;
}

export interface ProjectFormState {
  name: string;
  categories: CategoryRow[];
  /** A promoted version's id (GET /api/models/); null: follow the server's default model. */
  modelVersion: number | null;
  prefillEnabled: boolean;
}

/** The body of `POST /api/projects/` (docs/api.md "Projects"). */
export interface ProjectCreateBody {
  name: string;
  categories: CategoryRow[];
  model_version: number | null;
  prefill_enabled: boolean;
}

export interface ProjectRequest {
  body: ProjectCreateBody;
  /** rows[i]: the form row that body.categories[i] came from (blank rows are not sent). */
  rows: number[];
}

/**
 * What the form sends. Rows with a blank name are left out (an empty row is how the form
 * offers "add a label"); everything else goes as typed, for the server to judge.
 */
export function projectRequest(state: ProjectFormState): ProjectRequest {
  const categories: CategoryRow[] = [];
  const rows: number[] = [];
  state.categories.forEach((row, i) => {
    const name = row.name.trim();
    if (!name) return;
    categories.push({ name, color: row.color });
    rows.push(i);
  });
  return {
    body: { name: state.name, categories, model_version: state.modelVersion, prefill_enabled: state.prefillEnabled },
    rows,
  };
}

/**
 * Rows that repeat the (trimmed) name of an earlier row, each with its message. The API
 * skips a repeated name silently (docs/api.md), which would drop the row and the colour
 * picked for it; the form asks the user to resolve it instead. Names are compared as the
 * server does: exactly, so "Car" and "car" are two labels.
 *
 * @returns form row index -> messages (the same shape as `ProjectFormErrors.categoryRows`).
 */
export function duplicateCategoryRows(rows: CategoryRow[]): Map<number, string[]> {
  const first = new Map<string, number>();
  const out = new Map<number, string[]>();
  rows.forEach((row, i) => {
    const name = row.name.trim();
    if (!name) return;
    const seen = first.get(name);
    if (seen === undefined) first.set(name, i);
    else out.set(i, [`"${name}" is already label ${seen + 1}: remove this row or rename it.`]);
  });
  return out;
}

export interface ProjectFormErrors {
  name: string[];
  model_version: string[];
  prefill_enabled: string[];
  /** Errors about the list as a whole (or a category the server names in text). */
  categories: string[];
  /** Form row index -> messages for that row. */
  categoryRows: Map<number, string[]>;
  /** Anything else: `detail` (403, 413, network), `non_field_errors`, unknown fields. */
  other: string[];
}

function messages(v: unknown): string[] {
  if (Array.isArray(v)) return v.flatMap(messages);
  if (v && typeof v === 'object') return Object.values(v as Record<string, unknown>).flatMap(messages);
  return v === null || v === undefined ? [] : [String(v)];
}

/**
 * Sorts an error answer of `POST /api/projects/` by field.
 *
 * @param body the parsed JSON body (DRF: `{"detail"}` or `{"field": [msgs]}`; a category's
 *   errors are keyed by its index in the body: `{"categories": {"1": {"color": [msgs]}}}`).
 * @param rows `ProjectRequest.rows`, to map a body index back to its form row.
 * @param fallback the message when the body says nothing usable (ApiError's: "HTTP 500 …",
 *   "network error: …").
 */
export function projectFormErrors(body: unknown, rows: number[], fallback: string): ProjectFormErrors {
  const out: ProjectFormErrors = {
    name: [], model_version: [], prefill_enabled: [], categories: [], categoryRows: new Map(), other: [],
  };
  if (body && typeof body === 'object' && !Array.isArray(body)) {
    for (const [key, value] of Object.entries(body as Record<string, unknown>)) {
      if (key === 'name' || key === 'model_version' || key === 'prefill_enabled') out[key].push(...messages(value));
      else if (key === 'categories') {
        if (value && typeof value === 'object' && !Array.isArray(value)) {
          for (const [index, itemErrors] of Object.entries(value as Record<string, unknown>)) {
            const row = rows[Number(index)];
            const msgs = messages(itemErrors);
            if (row === undefined) out.categories.push(...msgs);
            else out.categoryRows.set(row, [...(out.categoryRows.get(row) ?? []), ...msgs]);
          }
        } else out.categories.push(...messages(value));
      } else out.other.push(...messages(value));
    }
  } else if (Array.isArray(body)) out.other.push(...messages(body));
  else if (typeof body === 'string' && body.trim() && !body.trimStart().startsWith('<')) out.other.push(body.trim().slice(0, 300));
  const any = out.name.length + out.model_version.length + out.prefill_enabled.length + out.categories.length
    + out.categoryRows.size + out.other.length;
  if (!any) out.other.push(fallback);
  return out;
}

/**
 * The colour offered for a new category row: the first colour of `palette` (the server's,
 * from the template) that no row uses yet, else the next one round the palette.
 */
export function nextCategoryColor(rows: CategoryRow[], palette: string[]): string {
  if (!palette.length) throw new Error('nextCategoryColor: empty palette');
  const used = new Set(rows.map((r) => r.color.toLowerCase()));
  return palette.find((c) => !used.has(c.toLowerCase())) ?? (palette[rows.length % palette.length] as string);
}
