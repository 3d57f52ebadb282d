// Just-in-time access on the pages (docs/approvals.md): the request form
// (web/templates/access_dialog.html), what a request's state means in words, and following a
// pending request until it is decided. Used by the targets page, the deep-link page and the
// requests page (which uses only the words).
import { api, errorMessage, localTime, showError, showRequestsNav, toSignIn } from './common.js';
import { reasonProblem } from './shell-prompt.js';

/** How often a pending request is asked about again. */
export const POLL_MS = 2000;
/** The longest grant the form offers when the gateway does not say (the API checks the role's). */
const DEFAULT_MAX_MINUTES = 24 * 60;
/** What the form proposes. */
const DEFAULT_MINUTES = 60;

/** "45 min", "2 h", "1 h 30 min", "20 s". */
export function durationText(seconds) {
  const s = Math.max(0, Math.round(Number(seconds) || 0));
  if (s < 60) return `${s} s`;
  const minutes = Math.round(s / 60);
  const h = Math.floor(minutes / 60);
  const m = minutes % 60;
  if (!h) return `${m} min`;
  return m ? `${h} h ${m} min` : `${h} h`;
}

/** "bob (“ok”), carol" from a list of decisions ({user, comment}). */
function decisionsText(list) {
  return (list ?? []).map((d) => (d.comment ? `${d.user} (“${d.comment}”)` : d.user)).join(', ');
}

/** A request's state in words: who decided, with their comments, and until when. */
export function stateText(r) {
  const approvals = r.approvals ?? [];
  switch (r.state) {
    case 'pending': {
      const so_far = approvals.length ? `; approved by ${decisionsText(approvals)}` : '';
      return `Waiting for approval: ${approvals.length} of ${r.min_approvals}${so_far}.`;
    }
    case 'approved':
      if (r.break_glass && !approvals.length) {
        return `Break-glass access until ${localTime(r.expires_at)}; approvers were told.`;
      }
      return `Approved by ${decisionsText(approvals)}; access until ${localTime(r.expires_at)}.`;
    case 'denied':
      return `Denied by ${decisionsText(r.denials) || 'an approver'}.`;
    case 'expired':
      return approvals.length || r.break_glass
        ? `Access ended at ${localTime(r.expires_at)}.`
        : 'Nobody decided in time: the request lapsed.';
    case 'revoked':
      return `Revoked${r.ended_by ? ` by ${r.ended_by}` : ''}${r.end_comment ? `: “${r.end_comment}”` : ''}.`;
    default:
      return r.state;
  }
}

/**
 * Asks `GET /api/v1/requests/{id}` every POLL_MS while the request is pending; calls
 * `onUpdate(request)` with each answer that differs from the last (and `onUpdate(null)` when
 * the request is gone from view). Returns a function that stops it.
 */
export function followRequest(id, onUpdate) {
  let stopped = false;
  let last = '';
  const tick = async () => {
    if (stopped) return;
    const result = await api('GET', `/api/v1/requests/${encodeURIComponent(id)}`);
    if (stopped) return;
    if (result.status === 401) return toSignIn();
    if (result.ok && result.data?.id) {
      const seen = JSON.stringify(result.data);
      if (seen !== last) {
        last = seen;
        onUpdate(result.data);
      }
      if (result.data.state !== 'pending') {
        stopped = true;
        return;
      }
    } else if (result.status === 404) {
      stopped = true;
      onUpdate(null);
      return;
    }
    // Other failures (the network, a busy gateway): ask again later.
    setTimeout(tick, POLL_MS);
  };
  tick();
  return () => {
    stopped = true;
  };
}

// --- The request form ------------------------------------------------------------------------

const dialog = document.getElementById('access-dialog');
const form = document.getElementById('access-form');
const reason = document.getElementById('access-reason');
const minutes = document.getElementById('access-minutes');
const minutesHint = document.getElementById('access-minutes-hint');
const breakGlassBox = document.getElementById('access-break-glass-box');
const breakGlass = document.getElementById('access-break-glass');
const error = document.getElementById('access-error');
const submit = document.getElementById('access-submit');

// What the open form is for: the target and what to do with the answer.
let asked = null;

/** The longest grant the form lets one ask for, in minutes. */
function maxMinutes(approval) {
  const seconds = Number(approval?.grant_seconds);
  return seconds >= 60 ? Math.floor(seconds / 60) : DEFAULT_MAX_MINUTES;
}

function submitLabel() {
  submit.textContent = breakGlass.checked ? 'Break glass: open access now' : 'Ask for access';
  submit.classList.toggle('danger', breakGlass.checked);
  submit.classList.toggle('primary', !breakGlass.checked);
}

/**
 * Opens the request form for `target` (an object of GET /api/v1/targets, with its
 * `approval`). Options: `reason` to fill it with; `onCreated(request)` with the new request;
 * `onConflict(code)` when the gateway says a request is already waiting or a grant running
 * (the page should look again); `onCancel` when the person closes it.
 */
export function askAccess(target, options = {}) {
  const approval = target.approval ?? {};
  asked = { target, options };
  dialog.returnValue = '';
  dialog.onclose = () => {
    if (dialog.returnValue === '') options.onCancel?.();
  };
  document.getElementById('access-node').textContent = target.name || target.id;
  document.getElementById('access-target').textContent = target.id;
  if (options.reason !== undefined) reason.value = options.reason;
  const max = maxMinutes(approval);
  minutes.max = String(max);
  if (!minutes.value || Number(minutes.value) > max) minutes.value = String(Math.min(DEFAULT_MINUTES, max));
  minutesHint.textContent = approval.grant_seconds
    ? `At most ${durationText(max * 60)}.`
    : 'The gateway tells you if that is longer than your role allows.';
  breakGlassBox.hidden = approval.break_glass !== true;
  breakGlass.checked = false;
  submitLabel();
  formInvalid(null, '');
  submit.disabled = false;
  dialog.showModal();
  reason.focus();
}

/** Shows `text` as the form's problem, marking `box` (the reason or the minutes) invalid. */
function formInvalid(box, text) {
  showError(error, text);
  for (const input of [reason, minutes]) {
    if (text && input === box) input.setAttribute('aria-invalid', 'true');
    else input.removeAttribute('aria-invalid');
  }
}

/** What is wrong with the minutes, or ''. */
function minutesProblem(text, max) {
  const n = Number(text);
  if (!/^\s*\d+\s*$/.test(text) || n < 1) return 'Give the time in whole minutes, at least 1.';
  if (n > max) return `At most ${max} minutes.`;
  return '';
}

if (form) {
  breakGlass.addEventListener('change', submitLabel);
  document.getElementById('access-cancel').addEventListener('click', () => dialog.close());
  reason.addEventListener('keydown', (event) => {
    if (event.key === 'Enter') {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  reason.addEventListener('input', () => {
    if (!error.hidden && !reasonProblem(reason.value.trim())) formInvalid(null, '');
  });

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (!asked) return;
    const text = reason.value.trim();
    const problem = reasonProblem(text) || minutesProblem(minutes.value, Number(minutes.max));
    if (problem) {
      const box = reasonProblem(text) ? reason : minutes;
      formInvalid(box, problem);
      box.focus();
      return;
    }
    formInvalid(null, '');
    submit.disabled = true;
    const label = submit.textContent;
    submit.textContent = 'Sending…';
    const body = {
      target: asked.target.id,
      reason: text,
      duration_seconds: Number(minutes.value) * 60,
    };
    if (breakGlass.checked && !breakGlassBox.hidden) body.break_glass = true;
    const result = await api('POST', '/api/v1/requests', body);
    if (result.status === 401) return toSignIn();
    submit.disabled = false;
    submit.textContent = label;
    if (result.ok && result.data?.id) {
      const { options } = asked;
      dialog.returnValue = 'sent';
      dialog.close();
      showRequestsNav();
      options.onCreated?.(result.data);
      return;
    }
    // Nothing typed is lost: the form stays open, with the gateway's words.
    showError(error, errorMessage(result, 'The request could not be sent.'));
    const code = result.data?.error?.code;
    if (['request_pending', 'grant_active', 'approval_not_required'].includes(code)) {
      asked.options.onConflict?.(code);
    }
  });
}
