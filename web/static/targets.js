// The targets page: the nodes from the API with a filter, and the reason prompt that opens a
// session and goes to its terminal.
import { api, errorMessage, showError, toSignIn } from './common.js';

const MIN_REASON = 10;
const MAX_REASON = 500;

const table = document.getElementById('targets');
const tbody = table.querySelector('tbody');
const filter = document.getElementById('filter');
const count = document.getElementById('targets-count');
const listError = document.getElementById('targets-error');
const unavailable = document.getElementById('targets-unavailable');
const accountHeader = table.querySelector('th.account');
const canOpen = table.dataset.canOpen === 'true';

const dialog = document.getElementById('reason-dialog');
const form = document.getElementById('reason-form');
const reason = document.getElementById('reason');
const reasonCount = document.getElementById('reason-count');
const reasonError = document.getElementById('reason-error');
const submit = document.getElementById('reason-submit');

let targets = [];
let chosen = null;
// Whether the nodes come from several accounts ([[aws.accounts]]): then a column shows which.
let accounts = false;

function cell(text, className) {
  const td = document.createElement('td');
  if (className) td.className = className;
  td.textContent = text;
  return td;
}

/** Everything a filter term may match, lower case. */
function haystack(t) {
  const tags = Object.entries(t.tags ?? {}).map(([k, v]) => `${k}=${v}`);
  return [t.name, t.id, t.platform, t.ping_status, t.account, t.region, ...tags]
    .join(' ')
    .toLowerCase();
}

function row(t) {
  const tr = document.createElement('tr');
  tr.dataset.target = t.id;
  tr.dataset.search = haystack(t);
  tr.append(cell(t.name || '—', 'name'), cell(t.id, 'id'), cell(t.platform || '—'));
  const status = cell('', 'status');
  const badge = document.createElement('span');
  const online = t.ping_status === 'Online';
  badge.className = `badge ${online ? 'online' : 'offline'}`;
  badge.textContent = t.ping_status || 'unknown';
  status.append(badge);
  tr.append(status);
  if (accounts) tr.append(cell(t.account || '—', 'account'));
  tr.append(cell(t.region));
  const tags = cell('', 'tags');
  for (const [k, v] of Object.entries(t.tags ?? {})) {
    if (k === 'Name') continue;
    const tag = document.createElement('span');
    tag.className = 'tag';
    tag.textContent = `${k}=${v}`;
    tags.append(tag, ' ');
  }
  tr.append(tags);
  const actions = cell('', 'actions');
  const connect = document.createElement('button');
  connect.type = 'button';
  connect.className = 'connect primary small';
  connect.textContent = 'Connect';
  connect.disabled = !canOpen || !online;
  connect.title = !canOpen
    ? 'Your roles do not allow opening sessions'
    : online ? `Open a shell on ${t.name || t.id}` : `The node is ${t.ping_status}: its agent is not connected`;
  connect.addEventListener('click', () => ask(t));
  actions.append(connect);
  tr.append(actions);
  return tr;
}

function applyFilter() {
  const terms = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
  let shown = 0;
  for (const tr of tbody.querySelectorAll('tr[data-target]')) {
    const match = terms.every((term) => tr.dataset.search.includes(term));
    tr.hidden = !match;
    if (match) shown += 1;
  }
  count.textContent = terms.length ? `${shown} of ${targets.length}` : `${targets.length} nodes`;
  const url = new URL(location.href);
  if (filter.value) url.searchParams.set('q', filter.value);
  else url.searchParams.delete('q');
  history.replaceState(null, '', url);
}

function message(text) {
  tbody.replaceChildren();
  const tr = document.createElement('tr');
  tr.className = 'placeholder';
  const td = cell(text);
  td.colSpan = accounts ? 8 : 7;
  tr.append(td);
  tbody.append(tr);
}

async function load() {
  const result = await api('GET', '/api/v1/targets');
  if (result.status === 401) return toSignIn();
  if (!result.ok) {
    message('The nodes could not be listed.');
    showError(listError, errorMessage(result, 'Listing the nodes failed.'));
    return;
  }
  showError(listError, '');
  targets = result.data.targets ?? [];
  accounts = targets.some((t) => t.account);
  accountHeader.hidden = !accounts;
  // Accounts or regions that did not answer: their nodes are missing from the list.
  const missing = (result.data.unavailable ?? []).map(
    (u) => `${u.account ? `account ${u.account}, ` : ''}${u.region}: ${u.error}`,
  );
  unavailable.textContent = missing.length
    ? `Some nodes could not be listed. Unavailable: ${missing.join('; ')}.`
    : '';
  unavailable.hidden = !missing.length;
  if (!targets.length) {
    message('No nodes you may reach.');
  } else {
    tbody.replaceChildren(...targets.map(row));
  }
  applyFilter();
}

// --- The reason prompt -----------------------------------------------------------------------

function ask(target) {
  chosen = target;
  document.getElementById('reason-node').textContent = target.name || target.id;
  document.getElementById('reason-target').textContent = target.id;
  showError(reasonError, '');
  submit.disabled = false;
  submit.textContent = 'Open shell';
  updateCount();
  dialog.showModal();
  reason.focus();
}

function updateCount() {
  reasonCount.textContent = String(reason.value.trim().length);
}

/** What is wrong with the reason, or '' (the server checks the same rules). */
function reasonProblem(text) {
  const n = [...text].length;
  if (n < MIN_REASON) return `Please give a reason of at least ${MIN_REASON} characters (${n} so far).`;
  if (n > MAX_REASON) return `The reason may be at most ${MAX_REASON} characters (${n}).`;
  if (/[\u0000-\u001f\u007f-\u009f]/.test(text)) return 'The reason must be one line, without control characters.';
  return '';
}

reason.addEventListener('input', () => {
  updateCount();
  if (!reasonError.hidden && !reasonProblem(reason.value.trim())) showError(reasonError, '');
});

// Enter submits; Shift+Enter is not a new line either (reasons are one line).
reason.addEventListener('keydown', (event) => {
  if (event.key === 'Enter') {
    event.preventDefault();
    form.requestSubmit();
  }
});

document.getElementById('reason-cancel').addEventListener('click', () => dialog.close());

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  const text = reason.value.trim();
  const problem = reasonProblem(text);
  if (problem) {
    showError(reasonError, problem);
    reason.focus();
    return;
  }
  showError(reasonError, '');
  submit.disabled = true;
  submit.textContent = 'Opening…';
  const result = await api('POST', '/api/v1/sessions', { target: chosen.id, reason: text });
  if (result.ok && result.data?.id) {
    location.assign(`/sessions/${encodeURIComponent(result.data.id)}`);
    return;
  }
  if (result.status === 401) return toSignIn();
  submit.disabled = false;
  submit.textContent = 'Open shell';
  showError(reasonError, errorMessage(result, 'The session could not be opened.'));
});

filter.value = new URL(location.href).searchParams.get('q') ?? '';
filter.addEventListener('input', applyFilter);
load();
