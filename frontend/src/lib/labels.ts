/**
 * Labels (categories) that change while the annotate page is open: an admin deletes the label
 * an annotator has selected (Settings), the next save is refused (400 "No category N in this
 * project"). The page then reloads the project's labels and, with these helpers, tells the
 * annotator which label went and keeps the mask for another label (app.ts saveOnce).
 */

export interface Label {
  id: number;
  name: string;
}

/** What the page says when the refused save's label is gone. */
export interface DeletedLabel {
  id: number;
  name: string;
  message: string;
}

/**
 * The save's label when it is no longer among the project's labels (``after``, reloaded after
 * the refusal), named from the labels the page had (``before``); null when the save had no
 * label or the label still exists (the refusal was about something else).
 */
export function deletedLabel(category: number | null, before: readonly Label[], after: readonly Label[]): DeletedLabel | null {
  if (category === null || after.some((c) => c.id === category)) return null;
  const known = before.find((c) => c.id === category);
  const name = known ? `'${known.name}'` : `#${category}`;
  return { id: category, name: known?.name ?? `#${category}`, message: `The label ${name} was deleted; pick another label and press Enter` };
}

/** The selected label after the labels were reloaded: kept while it exists, else none (the
 * annotator picks another; a save without one says "Pick a category first"). */
export function selectionAfterReload(selected: number | null, after: readonly Label[]): number | null {
  return selected !== null && after.some((c) => c.id === selected) ? selected : null;
}
