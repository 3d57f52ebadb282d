// The targets page: the nodes from the API with a filter, and per node either the reason
// prompt that opens a session and goes to its terminal or, for a node that needs an approver's
// yes (docs/approvals.md), where the person's access stands: granted (until when), asked for
// (followed live until decided) or to ask for.
import { api, errorMessage, localTime, showError, toSignIn } from './common.js';
import { askAccess, followRequest, stateText } from './access.js';
import { askReason } from './shell-prompt.js';

const table = document.getElementById('targets');
const tbody = table.querySelector('tbody');
const filter = document.getElementById('filter');
const count = document.getElementById('targets-count');
const listError = document.getElementById('targets-error');
const unavailable = document.getElementById('targets-unavailable');
const accountHeader = table.querySelector('th.account');
const canOpen = table.dataset.canOpen === 'true';

let targets = [];
// The requests followed live, by request id: the function that stops following each.
const following = new Map();
// The newest request this page has seen of each target (by target id), with its decisions:
// what the row says about it. Kept when the list is fetched again.
const decided = new Map();
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
  tr.append(cell(t.name || '—', 'name'), cell(t.id, 'id'), cell(t.platform || '—', 'platform'));
  const status = cell('', 'status');
  const badge = document.createElement('span');
  const online = t.ping_status === 'Online';
  badge.className = `badge ${online ? 'online' : 'offline'}`;
  badge.textContent = t.ping_status || 'unknown';
  status.append(badge);
  tr.append(status);
  if (accounts) tr.append(cell(t.account || '—', 'account'));
  tr.append(cell(t.region, 'region'));
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
  tr.append(actions);
  fillActions(tr, t);
  return tr;
}

function button(text, className, onClick) {
  const b = document.createElement('button');
  b.type = 'button';
  b.className = className;
  b.textContent = text;
  b.addEventListener('click', onClick);
  return b;
}

function note(text, className) {
  const span = document.createElement('span');
  span.className = `access-state ${className}`;
  span.textContent = text;
  return span;
}

/**
 * The Connect button of `t`, disabled when the roles allow no sessions or the node is off; a
 * disabled one comes with the reason as visible text (keyboard and touch users get no hover
 * tooltip), tied to the button with aria-describedby.
 */
function connectParts(t, options = {}) {
  const online = t.ping_status === 'Online';
  const connect = button('Connect', 'connect primary small', () => openShell(t, options));
  connect.disabled = !canOpen || !online;
  if (!canOpen) {
    // The page's notice above the table says why.
    connect.title = 'Your roles do not allow opening sessions';
    connect.setAttribute('aria-describedby', document.getElementById('cannot-open') ? 'cannot-open' : 'no-roles');
    return [connect];
  }
  if (online) {
    connect.title = `Open a shell on ${t.name || t.id}`;
    return [connect];
  }
  const why = note(`The node is ${t.ping_status || 'offline'}: its agent is not connected.`, 'offline');
  why.id = `offline-${t.id}`;
  connect.setAttribute('aria-describedby', why.id);
  return [why, connect];
}

/**
 * Where the person's access to `t` stands, as `tr.dataset.access`: `open` (no approval
 * needed), `granted`, `pending`, the state of a request just decided against (`denied`,
 * `expired`, `revoked`), or `none` (to ask for).
 */
function accessOf(t) {
  const a = t.approval;
  if (!a) return 'open';
  if (a.grant) return 'granted';
  if (a.request?.state === 'pending') return 'pending';
  const last = decided.get(t.id);
  if (last && last.state !== 'approved' && last.state !== 'pending') return last.state;
  return 'none';
}

/** Fills the actions cell of `tr` for `t` from its access. */
function fillActions(tr, t) {
  const actions = tr.querySelector('td.actions');
  const access = accessOf(t);
  const last = decided.get(t.id);
  tr.dataset.access = access;
  const requestButton = () => button('Request access', 'request-access primary small', () => ask(t));
  switch (access) {
    case 'open':
      actions.replaceChildren(...connectParts(t));
      break;
    case 'granted': {
      // Who approved (with their comments) when this page saw it happen; else until when.
      const known = last?.state === 'approved' && last.id === t.approval.grant.request_id;
      const until = note(
        known ? stateText(last) : `Access until ${localTime(t.approval.grant.expires_at)}.`,
        'granted',
      );
      actions.replaceChildren(until, ...connectParts(t, { grant: t.approval.grant }));
      break;
    }
    case 'pending': {
      const live = last?.id === t.approval.request.id ? last : null;
      const state = note(live ? stateText(live) : 'Waiting for approval…', 'pending');
      const parts = [state];
      if (live?.may_revoke) parts.push(button('Withdraw', 'withdraw ghost small', () => withdraw(t, live)));
      actions.replaceChildren(...parts);
      follow(t.id, t.approval.request.id);
      break;
    }
    case 'none':
      actions.replaceChildren(requestButton());
      break;
    default:
      // Decided against: say so, with the approver's comment, and offer to ask again.
      actions.replaceChildren(note(stateText(last), `ended ${access}`), requestButton());
  }
}

/** Shows what this page knows of `request` (of target `targetId`) in the target's row. */
function record(targetId, request) {
  const t = targets.find((x) => x.id === targetId);
  if (!t) return;
  decided.set(targetId, request);
  if (t.approval) {
    if (request.state === 'approved') {
      t.approval.grant = { request_id: request.id, expires_at: request.expires_at };
      t.approval.request = null;
    } else if (request.state === 'pending') {
      t.approval.request = { id: request.id, state: request.state };
    } else if (t.approval.request?.id === request.id || t.approval.grant?.request_id === request.id) {
      t.approval.request = null;
      t.approval.grant = null;
    }
  }
  refresh(t);
}

/** Fills the row of `t` again, if it is shown. */
function refresh(t) {
  const tr = tbody.querySelector(`tr[data-target="${CSS.escape(t.id)}"]`);
  if (tr) fillActions(tr, t);
}

/** Follows a pending request (once), updating its target's row as it is decided. */
function follow(targetId, requestId) {
  if (following.has(requestId)) return;
  const stop = followRequest(requestId, (request) => {
    if (request && request.state === 'pending') {
      record(targetId, request);
      return;
    }
    following.delete(requestId);
    if (request) {
      record(targetId, request);
    } else {
      // Gone from view: the list knows best.
      load();
    }
  });
  following.set(requestId, stop);
}

/** Withdraws (revokes) the person's own pending request. */
async function withdraw(t, request) {
  if (!confirm(`Withdraw your request for access to ${t.name || t.id}?`)) return;
  const result = await api('POST', `/api/v1/requests/${encodeURIComponent(request.id)}/revoke`, {});
  if (result.status === 401) return toSignIn();
  if (!result.ok) {
    showError(listError, errorMessage(result, 'Withdrawing the request failed.'));
    return;
  }
  showError(listError, '');
  following.get(request.id)?.();
  following.delete(request.id);
  record(t.id, result.data);
}

/** The request form for `t`; a new request shows in its row at once, followed live. */
function ask(t, reason) {
  askAccess(t, {
    reason,
    onCreated: (request) => record(t.id, request),
    onConflict: () => load(),
  });
}

/** The reason prompt for `t`; a gateway that wants an approval first gets the request form. */
function openShell(t, options = {}) {
  askReason(t, {
    grant: options.grant,
    reason: decided.get(t.id)?.state === 'approved' ? decided.get(t.id).reason : undefined,
    approvalRequired(target, reason) {
      // The page thought no approval (or a grant) was needed: it was stale. Show the row as
      // needing a request, ask for access with the reason already typed, and look again.
      t.approval = { ...(t.approval ?? {}), grant: null, request: null };
      decided.delete(t.id);
      refresh(t);
      ask(t, reason);
      load();
    },
  });
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
  // Follow only what is still pending in the new list.
  const pending = new Set(targets.map((t) => t.approval?.request?.id).filter(Boolean));
  for (const [id, stop] of following) {
    if (!pending.has(id)) {
      stop();
      following.delete(id);
    }
  }
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

filter.value = new URL(location.href).searchParams.get('q') ?? '';
filter.addEventListener('input', applyFilter);
load();
