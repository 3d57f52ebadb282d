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
  // From a terminal tab's frame, the whole page signs in again (the sign-in page may not be
  // framed) and comes back to the page with all its tabs.
  let page = window;
  try {
    if (window.top !== window && window.top.location.origin === location.origin) page = window.top;
  } catch {
    page = window;
  }
  const here = page.location.pathname + page.location.search;
  page.location.assign(`/login?next=${encodeURIComponent(here)}`);
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

/**
 * Shows the navigation's Requests entry (hidden by the server) to approvers and to people who
 * have asked for access. Once shown, it stays shown for this user in this tab without asking
 * again.
 */
async function wireRequestsNav() {
  const link = document.getElementById('nav-requests');
  const user = document.getElementById('user-name')?.textContent ?? '';
  if (!link || !link.hidden || !user) return;
  const key = 'porthole.requests-nav';
  try {
    if (sessionStorage.getItem(key) === user) {
      link.hidden = false;
      return;
    }
  } catch {
    // Storage turned off: ask every time.
  }
  const me = await api('GET', '/api/v1/me');
  let show = me.ok && (me.data?.approver === true || me.data?.user?.approver === true);
  if (me.ok && !show) {
    const mine = await api('GET', '/api/v1/requests?state=all');
    show = mine.ok && (mine.data?.requests ?? []).length > 0;
  }
  if (!show) return;
  link.hidden = false;
  try {
    sessionStorage.setItem(key, user);
  } catch {
    // As above.
  }
}

/** Shows the Requests entry now (the person just asked for access). */
export function showRequestsNav() {
  const link = document.getElementById('nav-requests');
  if (link) link.hidden = false;
}

/** A time (ms since the epoch) in the browser's time zone: "14:05" today, else with the date. */
export function localTime(ms) {
  const at = new Date(ms);
  if (Number.isNaN(at.getTime())) return '';
  const today = new Date().toDateString() === at.toDateString();
  return today
    ? at.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' })
    : at.toLocaleString(undefined, { dateStyle: 'short', timeStyle: 'short' });
}

/**
 * The top bar's menu button (shown by the style sheet on narrow screens only): folds the
 * navigation and the user away until pressed. Escape folds it again and returns to the button.
 */
function wireMenu() {
  const bar = document.getElementById('topbar');
  const button = document.getElementById('menu-button');
  if (!bar || !button) return;
  const set = (open) => {
    bar.classList.toggle('menu-open', open);
    button.setAttribute('aria-expanded', String(open));
  };
  bar.classList.add('js-menu');
  set(false);
  button.addEventListener('click', () => set(!bar.classList.contains('menu-open')));
  bar.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && bar.classList.contains('menu-open')) {
      set(false);
      button.focus();
    }
  });
}

/**
 * Gives every cell of the list tables its column's name (`data-label`), which the narrow-screen
 * style sheet shows beside the value when a row becomes a card. Rows added later (the targets
 * list, the live page's updates) are labelled as they come.
 */
function labelCells() {
  for (const table of document.querySelectorAll('table.list')) {
    const heads = [...table.querySelectorAll(':scope > thead > tr > th')].filter((th) => !th.hidden);
    const labels = heads.map((th) => th.textContent.trim());
    for (const tr of table.querySelectorAll(':scope > tbody > tr')) {
      [...tr.cells].forEach((td, i) => {
        if (td.colSpan > 1 || !labels[i]) return;
        if (td.dataset.label !== labels[i]) td.dataset.label = labels[i];
      });
    }
  }
}

function wireCellLabels() {
  const main = document.querySelector('main');
  if (!main || !main.querySelector('table.list, #live-body')) return;
  labelCells();
  let queued = false;
  new MutationObserver(() => {
    if (queued) return;
    queued = true;
    queueMicrotask(() => {
      queued = false;
      labelCells();
    });
  }).observe(main, { childList: true, subtree: true });
}

wireSignOut();
wireMenu();
wireCellLabels();
wireRequestsNav();
