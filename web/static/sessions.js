// The sessions and live pages: times in the browser's time zone, the terminate buttons, and
// on the live page a list that keeps itself current.
import { api, errorMessage, showError, toSignIn } from './common.js';

const error = document.getElementById('sessions-error');
// How often the live page fetches its list again.
const REFRESH_MS = 5000;
// A termination in progress: the list is not replaced under it.
let terminating = false;

enhance(document);

const liveBody = document.getElementById('live-body');
if (liveBody) setInterval(refreshLive, REFRESH_MS);

/** Local times and working buttons for the rows under `root`. */
function enhance(root) {
  // The server renders UTC; show local time, keeping UTC in the tooltip.
  for (const time of root.querySelectorAll('time[datetime]')) {
    const at = new Date(time.dateTime);
    if (!Number.isNaN(at.getTime())) {
      time.title = time.textContent;
      time.textContent = at.toLocaleString(undefined, { dateStyle: 'short', timeStyle: 'medium' });
    }
  }
  for (const button of root.querySelectorAll('button.terminate')) {
    button.addEventListener('click', () => terminate(button));
  }
}

/**
 * Fetches the live page again and puts its list in place of this one: sessions that started
 * appear, ended ones go, counters move. The server renders (and escapes) the list as it does
 * on load. Skipped while the tab is hidden or a termination is in progress.
 */
async function refreshLive() {
  if (terminating || document.hidden) return;
  let response;
  try {
    response = await fetch('/live', { credentials: 'same-origin', headers: { Accept: 'text/html' } });
  } catch {
    showError(error, 'Updating the list failed: the gateway did not answer. Retrying.');
    return;
  }
  if (response.status === 401 || new URL(response.url).pathname === '/login') return toSignIn();
  if (!response.ok) {
    showError(error, `Updating the list failed (HTTP ${response.status}). Retrying.`);
    return;
  }
  const page = new DOMParser().parseFromString(await response.text(), 'text/html');
  const fresh = page.getElementById('live-body');
  const current = document.getElementById('live-body');
  if (!fresh || !current || terminating) return;
  patchLive(current, fresh);
  showError(error, '');
  const updated = document.getElementById('live-updated');
  if (updated) updated.textContent = `Updated ${new Date().toLocaleTimeString()}`;
}

/**
 * Brings the list in `current` to `fresh`'s rows in place: rows of ended sessions go, new
 * ones are added, the others get their new counters. Rows, links and buttons that stay are
 * the same elements, so nothing under the pointer (or a test's click) is swapped away.
 */
function patchLive(current, fresh) {
  const tbody = current.querySelector('#live tbody');
  const freshBody = fresh.querySelector('#live tbody');
  if (!tbody || !freshBody) {
    // No sessions before or after: the whole list changes shape.
    const adopted = document.importNode(fresh, true);
    current.replaceWith(adopted);
    enhance(adopted);
    return;
  }
  const freshRows = [...freshBody.rows];
  const ids = new Set(freshRows.map((row) => row.dataset.sessionId));
  for (const row of [...tbody.rows]) {
    if (!ids.has(row.dataset.sessionId)) row.remove();
  }
  for (const freshRow of freshRows) {
    const row = [...tbody.rows].find((r) => r.dataset.sessionId === freshRow.dataset.sessionId);
    if (!row) {
      const added = document.importNode(freshRow, true);
      tbody.append(added);
      enhance(added);
      continue;
    }
    for (const name of ['duration', 'bytes-out', 'attached']) {
      const cell = row.querySelector(`td.${name}`);
      const value = freshRow.querySelector(`td.${name}`);
      if (cell && value) cell.textContent = value.textContent;
    }
    row.dataset.attached = freshRow.dataset.attached;
  }
}

/** Terminates a session after asking, then shows the list without it. */
async function terminate(button) {
  const id = button.dataset.sessionId;
  if (!confirm(`Terminate the session on ${button.dataset.target}? Its shell and everything running in it end.`)) {
    return;
  }
  terminating = true;
  button.disabled = true;
  button.textContent = 'Terminating…';
  const result = await api('DELETE', `/api/v1/sessions/${encodeURIComponent(id)}`);
  if (result.status === 401) return toSignIn();
  if (!result.ok && result.data?.error?.code !== 'session_ended') {
    terminating = false;
    button.disabled = false;
    button.textContent = 'Terminate';
    showError(error, errorMessage(result, 'Terminating the session failed.'));
    return;
  }
  await waitForEnd(id);
  location.reload();
}

/** Waits (a few seconds at most) until the session's row says it ended. */
async function waitForEnd(id) {
  for (let i = 0; i < 25; i += 1) {
    const result = await api('GET', `/api/v1/sessions/${encodeURIComponent(id)}`);
    if (!result.ok || !['starting', 'active'].includes(result.data?.state)) return;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}
