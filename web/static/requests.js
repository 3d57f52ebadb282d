// The requests page: the access requests a person made or may decide (GET /api/v1/requests),
// pending first, with Approve and Deny (and a comment) where they may decide, and Revoke where
// they may revoke. The list keeps itself current; rows are updated in place, so a comment
// being typed is never swept away, and an error answer is shown in its row with the comment
// kept.
import { api, errorMessage, localTime, showError, toSignIn } from './common.js';
import { POLL_MS, durationText } from './access.js';

const table = document.getElementById('requests');
const tbody = table.querySelector('tbody');
const error = document.getElementById('requests-error');
const empty = document.getElementById('requests-empty');
const updated = document.getElementById('requests-updated');
const filter = table.dataset.filter === 'pending' ? 'pending' : 'all';
// Node names by id, for the requests listed when the page was made (the server's JSON);
// nodes of later requests show their id only.
const names = readNames();

function readNames() {
  try {
    const parsed = JSON.parse(document.getElementById('node-names')?.textContent ?? '{}');
    return parsed && typeof parsed === 'object' ? parsed : {};
  } catch {
    return {};
  }
}

// Whether a fetch of the list is under way (the next tick is skipped, not queued).
let fetching = false;

function cell(className) {
  const td = document.createElement('td');
  td.className = className;
  return td;
}

function span(text, className) {
  const s = document.createElement('span');
  if (className) s.className = className;
  s.textContent = text;
  return s;
}

function badge(text, className) {
  return span(text, `badge ${className}`);
}

/** The row of request `id`, if shown. */
function rowOf(id) {
  return [...tbody.rows].find((tr) => tr.dataset.requestId === id) ?? null;
}

/** A new, empty row for request `r`: its cells, and a comment field kept for its life. */
function newRow(r) {
  const tr = document.createElement('tr');
  tr.dataset.requestId = r.id;
  for (const name of ['state', 'user', 'node', 'reason', 'duration', 'decisions', 'time', 'decide']) {
    tr.append(cell(name));
  }
  const comment = document.createElement('input');
  comment.type = 'text';
  comment.className = 'comment';
  comment.maxLength = 1000;
  comment.placeholder = 'Comment (optional; the requester sees it)';
  comment.setAttribute('aria-label', `Comment on ${r.user}'s request`);
  tr.comment = comment;
  return tr;
}

/** "approved by bob: “ok”" lines for the decisions so far. */
function decisionLines(r) {
  const lines = [];
  for (const [verb, list] of [['approved', r.approvals], ['denied', r.denials]]) {
    for (const d of list ?? []) {
      const line = span(`${d.user} ${verb}${d.comment ? `: “${d.comment}”` : ''}`, `decision ${verb}`);
      line.title = localTime(d.at);
      lines.push(line);
    }
  }
  if (r.ended_by && (r.state === 'revoked' || r.state === 'expired')) {
    const line = span(`${r.state} by ${r.ended_by}`, 'decision ended');
    if (r.ended_at) line.title = localTime(r.ended_at);
    lines.push(line);
  }
  return lines;
}

/** Brings the cells of `tr` to request `r` (the decide cell only when what may be done changed). */
function fill(tr, r) {
  tr.dataset.state = r.state;
  tr.dataset.user = r.user;
  const c = (name) => tr.querySelector(`td.${name}`);

  const state = [badge(r.state, `state-${r.state}`)];
  if (r.break_glass) state.push(' ', badge('break glass', 'break-glass'));
  if (r.state === 'pending' || r.state === 'approved') {
    const what = r.state === 'pending' ? 'lapses' : 'until';
    state.push(span(`${what} ${localTime(r.expires_at)}`, 'sub muted'));
  }
  c('state').replaceChildren(...state);
  c('user').textContent = r.user;
  const node = [];
  const name = Object.hasOwn(names, r.target) && typeof names[r.target] === 'string' ? names[r.target] : '';
  if (name) node.push(span(name, 'node-name'), ' ');
  const code = document.createElement('code');
  code.textContent = r.target;
  node.push(code);
  c('node').replaceChildren(...node);
  c('reason').textContent = r.reason;
  c('duration').textContent = durationText(r.duration_seconds);
  c('decisions').replaceChildren(
    span(`${(r.approvals ?? []).length} of ${r.min_approvals}`, 'count'),
    ...decisionLines(r),
  );
  const asked = document.createElement('time');
  asked.dateTime = new Date(r.created_at).toISOString();
  asked.textContent = localTime(r.created_at);
  c('time').replaceChildren(asked);

  const may = `${r.may_decide === true}/${r.may_revoke === true}`;
  if (tr.dataset.may === may) return;
  tr.dataset.may = may;
  const decide = c('decide');
  const rowError = document.createElement('p');
  rowError.className = 'error row-error';
  rowError.setAttribute('role', 'alert');
  rowError.hidden = true;
  const buttons = document.createElement('div');
  buttons.className = 'buttons';
  const action = (label, verb, className) => {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = `${verb} ${className} small`;
    b.textContent = label;
    b.addEventListener('click', () => decideOn(tr, verb));
    buttons.append(b);
  };
  if (r.may_decide) {
    action('Approve', 'approve', 'primary');
    action('Deny', 'deny', 'danger');
  }
  // The requester withdraws a pending request of their own; anything else is revoked.
  const own = r.user === table.dataset.user;
  if (r.may_revoke) action(own && r.state === 'pending' ? 'Withdraw' : 'Revoke', 'revoke', 'danger');
  if (buttons.childElementCount) {
    decide.replaceChildren(tr.comment, buttons, rowError);
  } else {
    decide.replaceChildren();
  }
}

/** Approves, denies or revokes the request of `tr`, with the comment typed. */
async function decideOn(tr, verb) {
  const id = tr.dataset.requestId;
  const rowError = tr.querySelector('.row-error');
  if (verb === 'revoke' && tr.dataset.state === 'approved'
    && !confirm(`Revoke ${tr.dataset.user}'s access? Their sessions under it end now.`)) {
    return;
  }
  const comment = tr.comment.value.trim();
  const buttons = [...tr.querySelectorAll('td.decide button')];
  tr.dataset.busy = 'true';
  buttons.forEach((b) => { b.disabled = true; });
  const result = await api('POST', `/api/v1/requests/${encodeURIComponent(id)}/${verb}`, comment ? { comment } : {});
  delete tr.dataset.busy;
  buttons.forEach((b) => { b.disabled = false; });
  if (result.status === 401) return toSignIn();
  if (!result.ok) {
    // The comment stays as typed; the gateway's words say what to change.
    showError(rowError, errorMessage(result, `The request could not be ${verb === 'deny' ? 'denied' : `${verb}d`}.`));
    return;
  }
  tr.comment.value = '';
  showError(rowError, '');
  if (result.data?.id) fill(tr, result.data);
  refresh();
}

/** Fetches the list and brings the table to it. */
async function refresh() {
  if (fetching) return;
  fetching = true;
  try {
    const result = await api('GET', `/api/v1/requests?state=${filter}`);
    if (result.status === 401) return toSignIn();
    if (!result.ok) {
      showError(error, errorMessage(result, 'Listing the requests failed.'));
      return;
    }
    showError(error, '');
    render(result.data?.requests ?? []);
    updated.textContent = `Updated ${new Date().toLocaleTimeString()}`;
  } finally {
    fetching = false;
  }
}

/** Puts the rows in the API's order, adding, updating and removing as needed. */
function render(requests) {
  tbody.querySelector('tr.placeholder')?.remove();
  const ids = new Set(requests.map((r) => r.id));
  for (const tr of [...tbody.rows]) {
    if (!ids.has(tr.dataset.requestId) && !tr.dataset.busy) tr.remove();
  }
  let previous = null;
  for (const r of requests) {
    let tr = rowOf(r.id);
    if (!tr) tr = newRow(r);
    if (!tr.dataset.busy) fill(tr, r);
    // Move only rows out of place (moving a row would take the focus from its comment).
    const wanted = previous ? previous.nextElementSibling : tbody.firstElementChild;
    if (wanted !== tr) tbody.insertBefore(tr, wanted);
    previous = tr;
  }
  const none = !tbody.rows.length;
  empty.hidden = !none;
  table.hidden = none;
}

refresh();
setInterval(() => {
  if (!document.hidden) refresh();
}, POLL_MS);
