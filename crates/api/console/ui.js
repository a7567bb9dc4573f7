// DOM helpers. Everything the API says is put in the page as text nodes,
// never as HTML, so a trunk named "<img onerror=…>" stays a name.

let nextId = 0;

/** A unique element ID with `prefix`. */
export function uid(prefix = 'f') {
  nextId += 1;
  return `${prefix}-${nextId}`;
}

/**
 * An element: `h('button', {type: 'button', on: {click}}, 'Save')`.
 * Keys: `class`, `text`, `on` (listeners), `dataset`, `hidden`, and any
 * other attribute; children are nodes, strings or arrays of them.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) {
      continue;
    }
    if (key === 'class') {
      el.className = value;
    } else if (key === 'text') {
      el.textContent = value;
    } else if (key === 'on') {
      for (const [event, listener] of Object.entries(value)) {
        el.addEventListener(event, listener);
      }
    } else if (key === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (key === 'value' || key === 'checked') {
      el[key] = value;
    } else if (value === true) {
      el.setAttribute(key, '');
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) {
      continue;
    }
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces an element's children. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

/** A page heading that takes focus after navigation. */
export function title(text) {
  return h('h1', { tabindex: '-1', class: 'page-title' }, text);
}

/**
 * A labelled input. `kind`: text (default), password, textarea, select
 * (with `options` as [value, label] pairs) or checkbox.
 */
export function field({ label, name, kind = 'text', value = '', hint = '', options = [], required = false, autocomplete = 'off', placeholder = '', inputmode = undefined }) {
  const id = uid(name);
  const hintId = hint ? `${id}-hint` : undefined;
  let input;
  if (kind === 'select') {
    input = h('select', { id, name, 'aria-describedby': hintId, required },
      options.map(([v, text]) => h('option', { value: v }, text)));
    input.value = value;
  } else if (kind === 'textarea') {
    input = h('textarea', { id, name, rows: 2, 'aria-describedby': hintId, required, placeholder, spellcheck: 'false' });
    input.value = value;
  } else if (kind === 'checkbox') {
    input = h('input', { id, name, type: 'checkbox', 'aria-describedby': hintId, checked: Boolean(value) });
    return h('div', { class: 'field check' }, input, h('label', { for: id }, label),
      hint ? h('p', { class: 'hint', id: hintId }, hint) : null);
  } else {
    input = h('input', {
      id, name, type: kind, 'aria-describedby': hintId, required, autocomplete, placeholder,
      spellcheck: 'false', autocapitalize: 'off', inputmode,
    });
    input.value = value;
  }
  return h('div', { class: 'field' }, h('label', { for: id }, label), input,
    hint ? h('p', { class: 'hint', id: hintId }, hint) : null);
}

/** The place a form's errors are announced. */
export function errorBox() {
  return h('div', { class: 'error', role: 'alert', 'aria-live': 'assertive', hidden: true });
}

/** Shows an API error in `box` as the server worded it (or hides the box). */
export function showError(box, error) {
  if (!error) {
    box.hidden = true;
    box.replaceChildren();
    return;
  }
  const fields = Array.isArray(error.fields) ? error.fields : [];
  replace(box,
    h('p', { class: 'msg' }, error.message || String(error)),
    error.code ? h('p', { class: 'code' }, `${error.code}${error.status ? ` (HTTP ${error.status})` : ''}`) : null,
    fields.length ? h('ul', { class: 'fields' }, fields.map((f) => h('li', {}, h('code', {}, f.field), `: ${f.message}`))) : null);
  box.hidden = false;
}

/** A polite status line (e.g. "Saved"). */
export function statusLine() {
  return h('p', { class: 'status', role: 'status', 'aria-live': 'polite' });
}

/**
 * A table that turns into labelled cards on a narrow screen. `columns`:
 * [label, cell(row) -> node|string]; `key(row)` names each row.
 */
export function table(caption, columns, rows, { empty = 'None yet.', key = undefined } = {}) {
  if (!rows.length) {
    return h('p', { class: 'empty' }, empty);
  }
  return h('table', { class: 'grid' },
    h('caption', { class: 'sr-only' }, caption),
    h('thead', {}, h('tr', {}, columns.map(([label]) => h('th', { scope: 'col' }, label)))),
    h('tbody', {}, rows.map((row) => tableRow(columns, row, key))));
}

/** One row of a `table`. */
export function tableRow(columns, row, key = undefined) {
  return h('tr', { dataset: key ? { key: key(row) } : {} },
    columns.map(([label, cell]) => h('td', { dataset: { label } }, cell(row))));
}

/** Splits a list typed as commas, spaces or lines. */
export function words(text) {
  return String(text || '').split(/[\s,]+/).map((w) => w.trim()).filter(Boolean);
}

/** A list for display. */
export function joined(list) {
  return Array.isArray(list) && list.length ? list.join(', ') : '—';
}

/** Nanoseconds since the epoch (a protojson int64 string) as a Date, or null. */
export function nsDate(ns) {
  if (ns === undefined || ns === null || ns === '' || ns === '0' || ns === 0) {
    return null;
  }
  try {
    return new Date(Number(BigInt(ns) / 1000000n));
  } catch {
    return null;
  }
}

/** A date and time in the browser's locale, with seconds. */
export function when(date) {
  if (!date) {
    return '—';
  }
  return date.toLocaleString(undefined, {
    year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit',
  });
}

/** A duration between two Dates, as 1 h 02 min 03 s. */
export function duration(from, to) {
  if (!from || !to) {
    return '—';
  }
  let s = Math.max(0, Math.round((to - from) / 1000));
  const hours = Math.floor(s / 3600);
  s -= hours * 3600;
  const minutes = Math.floor(s / 60);
  s -= minutes * 60;
  if (hours) {
    return `${hours} h ${String(minutes).padStart(2, '0')} min ${String(s).padStart(2, '0')} s`;
  }
  if (minutes) {
    return `${minutes} min ${String(s).padStart(2, '0')} s`;
  }
  return `${s} s`;
}

/** An enum name without its prefix, in words: SCS_ACTIVE -> active. */
export function enumWords(name, prefix) {
  if (typeof name !== 'string' || !name) {
    return '—';
  }
  const bare = prefix && name.startsWith(prefix) ? name.slice(prefix.length) : name;
  return bare.toLowerCase().replace(/_/g, ' ');
}

/** A SIPUri as user@host. */
export function uri(u) {
  if (!u) {
    return '—';
  }
  const host = u.host || u.ip || '';
  return host ? `${u.user || ''}@${host}` : (u.user || '—');
}

/** Sets a form's buttons busy while `work` runs. */
export async function busy(form, work) {
  const buttons = [...form.querySelectorAll('button')];
  form.setAttribute('aria-busy', 'true');
  buttons.forEach((b) => { b.disabled = true; });
  try {
    return await work();
  } finally {
    form.removeAttribute('aria-busy');
    buttons.forEach((b) => { b.disabled = false; });
  }
}

/** A definition list from [term, value] pairs (values that are null are left out). */
export function facts(pairs) {
  return h('dl', { class: 'facts' }, pairs.filter(([, v]) => v !== null && v !== undefined)
    .map(([term, value]) => h('div', {}, h('dt', {}, term), h('dd', {}, value === '' ? '—' : value))));
}
