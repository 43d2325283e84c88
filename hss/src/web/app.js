// IMS Lab HSS web page. Talks to the REST API (/api/v1) with the bearer token the user
// typed, kept in sessionStorage for this tab only. Every piece of data reaches the page
// through textContent: nothing from the store is ever parsed as HTML.
'use strict';

const API = '/api/v1';
const TOKEN_KEY = 'hss-token';
const $ = (id) => document.getElementById(id);
let subscribers = [];
let editing = null; // IMPI being edited, or null when the form adds
let timer = null;

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || '';
}

function status(msg, isError) {
  const s = $('status');
  s.textContent = msg || '';
  s.className = isError ? 'error' : '';
}

class ApiError extends Error {
  constructor(code, msg) {
    super(msg);
    this.code = code;
  }
}

async function api(method, path, body, contentType) {
  const headers = { Authorization: 'Bearer ' + token() };
  let payload;
  if (body !== undefined) {
    headers['Content-Type'] = contentType || 'application/json';
    payload = contentType ? body : JSON.stringify(body);
  }
  const r = await fetch(API + path, { method, headers, body: payload, cache: 'no-store' });
  let j = null;
  try {
    j = await r.json();
  } catch (_) {
    j = null;
  }
  if (r.status === 401) {
    logout();
    throw new ApiError(401, 'the token was refused: log in again');
  }
  if (!r.ok) {
    throw new ApiError(r.status, (j && j.error) || r.status + ' ' + r.statusText);
  }
  return j;
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function cell(text, cls) {
  return el('td', text === undefined || text === null || text === '' ? '' : text, cls);
}

function lines(items) {
  const td = el('td', null, 'mono');
  for (const t of items) td.appendChild(el('div', t));
  return td;
}

function stateCell(state) {
  const label = { registered: 'registered', unregistered: 'unregistered', not_registered: 'not registered' };
  return cell(label[state] || state, 'state-' + state);
}

function emptyRow(tbody, cols, text) {
  const tr = el('tr');
  const td = el('td', text, 'empty');
  td.colSpan = cols;
  tr.appendChild(td);
  tbody.replaceChildren(tr);
}

function renderRegs(regs) {
  const tbody = $('regs');
  if (!regs.length) return emptyRow(tbody, 5, 'no registrations');
  tbody.replaceChildren(...regs.map((r) => {
    const tr = el('tr');
    tr.dataset.impi = r.impi;
    tr.append(
      cell(r.impi, 'mono'),
      stateCell(r.reg_state),
      cell(r.scscf_name, 'mono'),
      cell([r.scscf_host, r.scscf_realm].filter(Boolean).join(' / '), 'mono'),
      lines(r.impus || []),
    );
    return tr;
  }));
}

function renderSubs(list) {
  const tbody = $('subs');
  if (!list.length) return emptyRow(tbody, 9, 'no subscribers');
  tbody.replaceChildren(...list.map((s) => {
    const tr = el('tr');
    tr.dataset.impi = s.impi;
    const actions = el('td');
    const edit = el('button', 'Edit');
    edit.type = 'button';
    edit.className = 'edit';
    edit.addEventListener('click', () => startEdit(s));
    const del = el('button', 'Delete');
    del.type = 'button';
    del.className = 'delete';
    del.addEventListener('click', () => remove(s));
    actions.append(edit, del);
    tr.append(
      cell(s.impi, 'mono'),
      cell(s.imsi, 'mono'),
      cell(s.msisdn, 'mono'),
      lines((s.impus || []).map((u) => u.uri + (u.barred ? ' (barred)' : ''))),
      // The API masks K and OPc; show that they are set, never their value.
      cell('set (hidden)', 'empty'),
      cell(s.amf, 'mono'),
      cell(s.sqn, 'mono'),
      stateCell(s.reg_state),
      actions,
    );
    return tr;
  }));
}

function renderCalls(calls) {
  const tbody = $('calls');
  if (!calls.length) return emptyRow(tbody, 5, 'no calls');
  tbody.replaceChildren(...calls.map((c) => {
    const tr = el('tr');
    const caller = c.anonymous
      ? 'Anonymous'
      : [c.caller_name, c.caller_number].filter(Boolean).join(' ');
    tr.append(
      cell(new Date(c.started).toLocaleString()),
      cell(caller || 'unknown'),
      cell(c.callee_number || c.callee, 'mono'),
      cell(c.outcome || 'in progress'),
      cell(c.outcome === 'answered' ? c.talk_seconds + ' s' : ''),
    );
    return tr;
  }));
}

// The call log lives in the application server; its absence is not an error of the page.
async function refreshCalls() {
  const note = $('calls-note');
  try {
    const r = await api('GET', '/calls?limit=50');
    note.hidden = true;
    renderCalls(r.calls || []);
  } catch (e) {
    if (e.code === 401) throw e;
    note.textContent = e.message;
    note.hidden = false;
    $('calls').replaceChildren();
  }
}

async function refresh() {
  if (!token()) return;
  try {
    const [subs, regs] = await Promise.all([
      api('GET', '/subscribers?details=true'),
      api('GET', '/registrations'),
      refreshCalls(),
    ]);
    subscribers = subs.subscribers || [];
    renderSubs(subscribers);
    renderRegs(regs.registrations || []);
    $('app').dataset.loaded = String(Date.now());
  } catch (e) {
    status(e.message, true);
  }
}

function field(id) {
  return $(id).value.trim();
}

function resetForm() {
  editing = null;
  $('sub-form').reset();
  $('form-title').textContent = 'Add a subscriber';
  $('f-save').textContent = 'Add';
  $('f-cancel').hidden = true;
  for (const id of ['f-imsi', 'f-impi']) $(id).readOnly = false;
  $('f-k').placeholder = '32 hex digits';
  $('f-opc').placeholder = '32 hex digits (or OP)';
}

function startEdit(s) {
  resetForm();
  editing = s.impi;
  $('form-title').textContent = 'Edit ' + s.impi;
  $('f-save').textContent = 'Save';
  $('f-cancel').hidden = false;
  $('f-imsi').value = s.imsi || '';
  $('f-impi').value = s.impi;
  for (const id of ['f-imsi', 'f-impi']) $(id).readOnly = true;
  $('f-msisdn').value = s.msisdn || '';
  $('f-iccid').value = s.iccid || '';
  $('f-amf').value = s.amf || '';
  $('f-profile').value = s.profile || '';
  $('f-impus').value = (s.impus || []).map((u) => u.uri).join('\n');
  $('f-k').placeholder = 'unchanged';
  $('f-opc').placeholder = 'unchanged';
  $('sub-form').scrollIntoView();
}

function impusFromForm(existing) {
  const uris = $('f-impus').value.split('\n').map((l) => l.trim()).filter(Boolean);
  if (!uris.length) return undefined;
  // Keep what the form does not show (IRS, barring, display name) for IMPUs that stay.
  const old = new Map((existing || []).map((u) => [u.uri, u]));
  return uris.map((uri) => old.get(uri) || { uri });
}

async function save(ev) {
  ev.preventDefault();
  const body = {};
  const put = (key, id) => {
    const v = field(id);
    if (v) body[key] = v;
  };
  try {
    if (editing) {
      const s = subscribers.find((x) => x.impi === editing) || {};
      // Empty clears these on an edit; K and OPc stay unless typed again.
      body.msisdn = field('f-msisdn');
      body.iccid = field('f-iccid');
      body.profile = field('f-profile');
      put('amf', 'f-amf');
      put('k', 'f-k');
      put('opc', 'f-opc');
      put('op', 'f-op');
      const impus = impusFromForm(s.impus);
      if (impus) body.impus = impus;
      let q = 'Save the changes to ' + editing + '?';
      if (s.reg_state && s.reg_state !== 'not_registered') {
        q += ' It is registered: its S-CSCF gets the new profile (PPR).';
      }
      if (!window.confirm(q)) return;
      await api('PATCH', '/subscribers/' + encodeURIComponent(editing), body);
      status('saved ' + editing);
    } else {
      for (const [k, id] of [['imsi', 'f-imsi'], ['impi', 'f-impi'], ['msisdn', 'f-msisdn'],
        ['iccid', 'f-iccid'], ['k', 'f-k'], ['opc', 'f-opc'], ['op', 'f-op'], ['amf', 'f-amf'],
        ['profile', 'f-profile']]) put(k, id);
      const impus = impusFromForm([]);
      if (impus) body.impus = impus;
      const s = await api('POST', '/subscribers', body);
      status('added ' + s.impi);
    }
    resetForm();
    await refresh();
  } catch (e) {
    status(e.message, true);
  }
}

async function remove(s) {
  let q = 'Delete ' + s.impi + '?';
  if (s.reg_state !== 'not_registered') {
    q += ' It is registered: the HSS first deregisters it at its S-CSCF (RTR).';
  }
  if (!window.confirm(q)) return;
  try {
    await api('DELETE', '/subscribers/' + encodeURIComponent(s.impi));
    status('deleted ' + s.impi);
    if (editing === s.impi) resetForm();
    await refresh();
  } catch (e) {
    status(e.message, true);
  }
}

async function importCsv(ev) {
  ev.preventDefault();
  const out = $('csv-result');
  out.className = '';
  try {
    const f = $('csv-file').files[0];
    const text = f ? await f.text() : $('csv-text').value;
    if (!text.trim()) throw new Error('choose a file or paste CSV text');
    const q = $('csv-update').checked ? '?update=true' : '';
    const r = await api('POST', '/import' + q, text, 'text/csv');
    out.textContent = 'imported ' + r.added + ' new, ' + r.updated + ' updated, from ' + r.rows + ' rows';
    $('csv-form').reset();
    await refresh();
  } catch (e) {
    out.textContent = e.message;
    out.className = 'error';
    await refresh();
  }
}

function showApp(on) {
  $('app').hidden = !on;
  $('login').hidden = on;
  $('logout').hidden = !on;
  if (timer) clearInterval(timer);
  timer = on ? setInterval(refresh, 5000) : null;
}

function logout() {
  sessionStorage.removeItem(TOKEN_KEY);
  showApp(false);
  subscribers = [];
  $('subs').replaceChildren();
  $('regs').replaceChildren();
}

async function login(ev) {
  ev.preventDefault();
  const t = $('token').value.trim();
  $('token').value = '';
  if (!t) return;
  sessionStorage.setItem(TOKEN_KEY, t);
  try {
    await api('GET', '/subscribers');
    status('');
    showApp(true);
    await refresh();
  } catch (e) {
    status(e.code === 401 ? 'wrong token' : e.message, true);
  }
}

document.addEventListener('DOMContentLoaded', () => {
  $('login').addEventListener('submit', login);
  $('logout').addEventListener('click', () => {
    logout();
    status('logged out');
  });
  $('refresh').addEventListener('click', refresh);
  $('sub-form').addEventListener('submit', save);
  $('f-cancel').addEventListener('click', resetForm);
  $('csv-form').addEventListener('submit', importCsv);
  if (token()) {
    showApp(true);
    refresh();
  }
});
