// The sessions page: times in the browser's time zone, and the terminate buttons.
import { api, errorMessage, showError, toSignIn } from './common.js';

const error = document.getElementById('sessions-error');

// The server renders UTC; show local time, keeping UTC in the tooltip.
for (const time of document.querySelectorAll('time[datetime]')) {
  const at = new Date(time.dateTime);
  if (!Number.isNaN(at.getTime())) {
    time.title = time.textContent;
    time.textContent = at.toLocaleString(undefined, { dateStyle: 'short', timeStyle: 'medium' });
  }
}

for (const button of document.querySelectorAll('button.terminate')) {
  button.addEventListener('click', async () => {
    const id = button.dataset.sessionId;
    if (!confirm(`Terminate the session on ${button.dataset.target}? Its shell and everything running in it end.`)) {
      return;
    }
    button.disabled = true;
    button.textContent = 'Terminating…';
    const result = await api('DELETE', `/api/v1/sessions/${encodeURIComponent(id)}`);
    if (result.status === 401) return toSignIn();
    if (!result.ok && result.data?.error?.code !== 'session_ended') {
      button.disabled = false;
      button.textContent = 'Terminate';
      showError(error, errorMessage(result, 'Terminating the session failed.'));
      return;
    }
    await waitForEnd(id);
    location.reload();
  });
}

/** Waits (a few seconds at most) until the session's row says it ended. */
async function waitForEnd(id) {
  for (let i = 0; i < 25; i += 1) {
    const result = await api('GET', `/api/v1/sessions/${encodeURIComponent(id)}`);
    if (!result.ok || !['starting', 'active'].includes(result.data?.state)) return;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}
