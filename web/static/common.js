// Shared by every page: the CSRF token, a small JSON API client, the sign-out button.
// Pages pass data to scripts in data-* attributes (the Content-Security-Policy allows no inline
// script).

/** The CSRF token the server rendered into <meta name="csrf-token"> (signed-in pages only). */
export function csrfToken() {
  return document.querySelector('meta[name="csrf-token"]')?.content ?? '';
}

/**
 * Calls the JSON API. Resolves to {ok, status, data}; `data` is the parsed body (or null).
 * State-changing calls carry X-CSRF-Token; the browser adds the Origin header itself.
 * A network failure resolves to {ok: false, status: 0, data: {error: {message}}}.
 */
export async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET') headers['X-CSRF-Token'] = csrfToken();
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
    });
  } catch (e) {
    return { ok: false, status: 0, data: { error: { code: 'network', message: `The gateway could not be reached (${e.message}).` } } };
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  return { ok: response.ok, status: response.status, data };
}

/** The person-readable message of an API error answer. */
export function errorMessage(result, fallback = 'Something went wrong.') {
  const message = result?.data?.error?.message;
  if (message) return message.charAt(0).toUpperCase() + message.slice(1);
  if (result?.status) return `${fallback} (HTTP ${result.status})`;
  return fallback;
}

/** Sends the browser to the sign-in page, coming back to this page afterwards. */
export function toSignIn() {
  const here = location.pathname + location.search;
  location.assign(`/login?next=${encodeURIComponent(here)}`);
}

/** Shows `text` in an error element (hidden when empty). */
export function showError(element, text) {
  if (!element) return;
  element.textContent = text ?? '';
  element.hidden = !text;
}

function wireSignOut() {
  const button = document.getElementById('sign-out');
  if (!button) return;
  button.addEventListener('click', async () => {
    button.disabled = true;
    const result = await api('POST', '/api/v1/auth/logout');
    // 401: already signed out. Either way the sign-in page is where to go, through the
    // identity provider's sign-out when the gateway names one.
    if (result.ok || result.status === 401) {
      const redirect = result.ok ? result.data?.redirect : null;
      location.assign(typeof redirect === 'string' && /^https?:\/\//.test(redirect) ? redirect : '/login?signed_out=1');
    } else {
      button.disabled = false;
      alert(errorMessage(result, 'Signing out failed.'));
    }
  });
}

wireSignOut();
