// The reason prompt (web/templates/reason_dialog.html): asks why, opens a session on a node
// and goes to its terminal. Used by the targets page and the deep-link page.
import { api, errorMessage, localTime, showError, toSignIn } from './common.js';

export const MIN_REASON = 10;
export const MAX_REASON = 500;

const dialog = document.getElementById('reason-dialog');
const form = document.getElementById('reason-form');
const reason = document.getElementById('reason');
const reasonCount = document.getElementById('reason-count');
const reasonError = document.getElementById('reason-error');
const submit = document.getElementById('reason-submit');
const documentLine = document.getElementById('reason-document-line');
const grantLine = document.getElementById('reason-grant');

// What the open prompt is for: the target (an object of GET /api/v1/targets), the SSM
// document to start (empty: the default), and what to do when the node turns out to need
// an approval first.
let chosen = null;
let documentName = '';
let onApprovalRequired = null;
let onOpened = null;

/** What is wrong with a reason, or '' (the server checks the same rules, and the role's). */
export function reasonProblem(text) {
  const n = [...text].length;
  if (n < MIN_REASON) return `Please give a reason of at least ${MIN_REASON} characters (${n} so far).`;
  if (n > MAX_REASON) return `The reason may be at most ${MAX_REASON} characters (${n}).`;
  if (/[\u0000-\u001f\u007f-\u009f]/.test(text)) return 'The reason must be one line, without control characters.';
  return '';
}

/**
 * Opens the prompt for `target`. Options: `reason` to fill it with, `document` to start,
 * `grant` ({expires_at}) to say until when access was granted, `onCancel` when the person
 * closes it without opening, and `approvalRequired(target, reason)` for a start the gateway
 * answers with 403 approval_required (a stale page): the prompt closes and that is called.
 * `opened(session)` takes the new session (the answer of POST /api/v1/sessions) instead of
 * going to its terminal page (the terminal page's tabs).
 */
export function askReason(target, options = {}) {
  chosen = target;
  documentName = options.document ?? '';
  onApprovalRequired = options.approvalRequired ?? null;
  onOpened = options.opened ?? null;
  // Closed by Cancel or Escape: the return value stays empty.
  dialog.onclose = () => {
    if (dialog.returnValue === '') options.onCancel?.();
  };
  dialog.returnValue = '';
  document.getElementById('reason-node').textContent = target.name || target.id;
  document.getElementById('reason-target').textContent = target.id;
  document.getElementById('reason-document').textContent = documentName;
  documentLine.hidden = !documentName;
  grantLine.textContent = options.grant ? `Access granted until ${localTime(options.grant.expires_at)}.` : '';
  grantLine.hidden = !options.grant;
  if (options.reason !== undefined) reason.value = options.reason;
  reasonInvalid('');
  submit.disabled = false;
  submit.textContent = 'Open shell';
  updateCount();
  dialog.showModal();
  reason.focus();
}

/** Shows `text` as the reason's problem (none when empty), marking the box invalid meanwhile. */
function reasonInvalid(text) {
  showError(reasonError, text);
  if (text) reason.setAttribute('aria-invalid', 'true');
  else reason.removeAttribute('aria-invalid');
}

function updateCount() {
  reasonCount.textContent = String(reason.value.trim().length);
}

// The prompt is wired only on pages that have it.
if (form) {
  reason.addEventListener('input', () => {
    updateCount();
    if (!reasonError.hidden && !reasonProblem(reason.value.trim())) reasonInvalid('');
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
      reasonInvalid(problem);
      reason.focus();
      return;
    }
    reasonInvalid('');
    submit.disabled = true;
    submit.textContent = 'Opening…';
    const body = { target: chosen.id, reason: text };
    if (documentName) body.document = documentName;
    const result = await api('POST', '/api/v1/sessions', body);
    if (result.ok && result.data?.id) {
      dialog.returnValue = 'opened';
      if (onOpened) {
        const then = onOpened;
        dialog.close();
        then(result.data);
        return;
      }
      location.assign(`/sessions/${encodeURIComponent(result.data.id)}`);
      return;
    }
    if (result.status === 401) return toSignIn();
    submit.disabled = false;
    submit.textContent = 'Open shell';
    if (result.status === 403 && result.data?.error?.code === 'approval_required' && onApprovalRequired) {
      // The page was stale (or the grant just ended): ask for access instead, with this reason.
      const target = chosen;
      const then = onApprovalRequired;
      dialog.returnValue = 'approval_required';
      dialog.close();
      then(target, text);
      return;
    }
    const message = errorMessage(result, 'The session could not be opened.');
    // A reason the gateway refused marks the box; any other refusal is not the box's fault.
    if (result.data?.error?.code === 'invalid_reason') reasonInvalid(message);
    else showError(reasonError, message);
  });
}
