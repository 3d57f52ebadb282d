// The deep-link page (/connect/{target}?reason=…&document=…, /requests/new?target=…&reason=…):
// opens the reason prompt, or the request form where the node needs an approver's yes, filled
// from the link; the person still confirms. A pending request of theirs for the node is
// followed live until it is decided. The link's values arrive in data-* attributes (escaped by
// the server) and go into the page as text only.
import { api, errorMessage, localTime, showError, toSignIn } from './common.js';
import { askAccess, followRequest, stateText } from './access.js';
import { askReason } from './shell-prompt.js';

const card = document.getElementById('connect');
const stateLine = document.getElementById('connect-state');
const error = document.getElementById('connect-error');
const openButton = document.getElementById('connect-open');
const requestButton = document.getElementById('connect-request');
const link = {
  intent: card.dataset.intent,
  id: card.dataset.target,
  reason: card.dataset.reason ?? '',
  document: card.dataset.document ?? '',
};

// The node as GET /api/v1/targets gives it (with its `approval`); the newest request of the
// person for it that this page has seen; whether the link's reason was put in a form yet.
let target = null;
let last = null;
let prefilled = false;
// The request followed live, and the function that stops following it.
let following = null;
let stopFollowing = null;

/** The link's reason the first time a form opens; afterwards what the person typed stays. */
function reasonOnce() {
  if (prefilled) return undefined;
  prefilled = true;
  return link.reason;
}

/** Where access stands, shown on the card; returns what to offer: open, request or wait. */
function show() {
  const a = target.approval;
  openButton.hidden = true;
  requestButton.hidden = true;
  let offer;
  if (!a || a.grant) {
    card.dataset.access = a ? 'granted' : 'open';
    if (a && last?.state === 'approved' && last.id === a.grant.request_id) {
      stateLine.textContent = stateText(last);
    } else if (a) {
      stateLine.textContent = `You have access until ${localTime(a.grant.expires_at)}.`;
    } else if (link.intent === 'request') {
      stateLine.textContent = 'This node needs no approval: you may open a shell on it directly.';
    } else {
      stateLine.textContent = 'Give the reason to open a shell.';
    }
    openButton.hidden = false;
    offer = 'open';
  } else if (a.request?.state === 'pending') {
    card.dataset.access = 'pending';
    stateLine.textContent = last?.id === a.request.id ? stateText(last) : 'Your request is waiting for approval…';
    follow(a.request.id);
    offer = 'wait';
  } else {
    const ended = last && last.state !== 'approved' && last.state !== 'pending';
    card.dataset.access = ended ? last.state : 'none';
    stateLine.textContent = ended
      ? `${stateText(last)} You may ask again.`
      : 'This node needs an approver\'s yes before you open a shell on it.';
    requestButton.hidden = false;
    offer = 'request';
  }
  return offer;
}

/** Takes in what the gateway says of the person's request. */
function record(request) {
  last = request;
  const a = target.approval;
  if (a) {
    if (request.state === 'approved') {
      a.grant = { request_id: request.id, expires_at: request.expires_at };
      a.request = null;
    } else if (request.state === 'pending') {
      a.request = { id: request.id, state: 'pending' };
    } else {
      a.request = null;
      if (a.grant?.request_id === request.id) a.grant = null;
    }
  }
  show();
}

function follow(id) {
  if (following === id) return;
  stopFollowing?.();
  following = id;
  stopFollowing = followRequest(id, (request) => {
    if (following !== id) return;
    if (request) {
      if (request.state !== 'pending') following = null;
      record(request);
    } else {
      following = null;
      load();
    }
  });
}

function openPrompt() {
  askReason(target, {
    reason: reasonOnce(),
    document: link.document,
    grant: target.approval?.grant ?? undefined,
    approvalRequired(t, reason) {
      // The list said no approval was needed (or a grant ran): no longer so. Ask for access.
      target.approval = { ...(target.approval ?? {}), grant: null, request: null };
      last = null;
      show();
      openRequest(reason);
    },
  });
}

function openRequest(reason) {
  askAccess(target, {
    reason: reason ?? reasonOnce(),
    onCreated: record,
    onConflict: () => load(),
  });
}

openButton.addEventListener('click', openPrompt);
requestButton.addEventListener('click', () => openRequest());

/** Fetches the node's state; the first time, opens what the link asks for. */
async function load(first = false) {
  const result = await api('GET', '/api/v1/targets');
  if (result.status === 401) return toSignIn();
  if (!result.ok) {
    showError(error, errorMessage(result, 'Listing the nodes failed.'));
    stateLine.textContent = '';
    return;
  }
  showError(error, '');
  target = (result.data.targets ?? []).find((t) => t.id === link.id) ?? null;
  if (!target) {
    // The server found it a moment ago; the policy or the list changed since.
    card.dataset.access = 'gone';
    stateLine.textContent = 'This node is no longer among those you may reach.';
    openButton.hidden = true;
    requestButton.hidden = true;
    return;
  }
  const offer = show();
  if (!first) return;
  if (offer === 'open') openPrompt();
  else if (offer === 'request') openRequest();
}

load(true);
