// The terminal page: xterm.js attached to the gateway's WebSocket for one session.
//
// Protocol (docs/architecture.md, "Attach"): binary frames are terminal bytes both ways; text
// frames are JSON control messages: {"type":"resize","cols","rows"} and {"type":"ack","bytes"}
// from here; {"type":"status"}, {"type":"sync","offset"}, {"type":"resync"}, {"type":"warning"} and
// {"type":"closed"} from the gateway.
//
// Observing (`/sessions/ID?mode=observe`, data-mode="observe"): a read-only view of someone
// else's session for roles that may observe it. The socket asks for `mode=observe`; the gateway
// sends a snapshot, then the output; nothing typed is sent (it would be refused).
//
// Offsets: the page counts the session's output bytes it has drawn. A reconnect asks for the
// output from that offset (`?since=N`): the gateway sends exactly the missing bytes when it
// still holds them, else a snapshot of the screen (which starts with a terminal reset). Either
// way it then sends `sync` with the current offset. Acknowledgements report the offset drawn,
// so the gateway never runs more than a window ahead of what the screen has shown.
import { Terminal } from './vendor/xterm/xterm.mjs';
import { FitAddon } from './vendor/xterm/addon-fit.mjs';
import { WebLinksAddon } from './vendor/xterm/addon-web-links.mjs';
import { Unicode11Addon } from './vendor/xterm/addon-unicode11.mjs';
import { SearchAddon } from './vendor/xterm/addon-search.mjs';
import { api, errorMessage, showError, toSignIn } from './common.js';

/** WebSocket close codes of the gateway (server/src/gateway/attach.rs). */
const CLOSE_SESSION_ENDED = 4000;
const CLOSE_REPLACED = 4001;
const CLOSE_NOT_ALLOWED = 4003;
const CLOSE_BAD_MESSAGE = 4400;
const CLOSE_HANDED_OVER = 4010;

/** Largest input frame sent (the gateway accepts up to 64 KiB per message). */
const MAX_INPUT_FRAME = 16 * 1024;
/** Reconnect delays after an unexpected disconnect (ms), the last one repeating. */
const RETRY_DELAYS = [500, 1000, 2000, 4000, 8000, 15000];

const root = document.getElementById('session');
const data = root.dataset;
const sessionId = data.sessionId;
const observing = data.mode === 'observe';
const nodeLabel = data.nodeName || data.target;
const connState = document.getElementById('conn-state');
const elapsed = document.getElementById('elapsed');
const termSize = document.getElementById('term-size');
const banner = document.getElementById('banner');
const bannerText = document.getElementById('banner-text');
const bannerAction = document.getElementById('banner-action');
const bannerLink = document.getElementById('banner-link');
const terminateButton = document.getElementById('terminate');

// --- Status bar ------------------------------------------------------------------------------

const clockOffset = Number(data.serverNow) - Date.now();
const startedAt = Number(data.startedAt);
let endedAt = Number(data.endedAt) || 0;

function formatElapsed(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(s / 3600);
  const m = Math.floor(s / 60) % 60;
  const pad = (n) => String(n).padStart(2, '0');
  return h > 0 ? `${h}:${pad(m)}:${pad(s % 60)}` : `${m}:${pad(s % 60)}`;
}

function tick() {
  const now = endedAt || Date.now() + clockOffset;
  elapsed.textContent = formatElapsed(now - startedAt);
}
tick();
const ticker = setInterval(tick, 1000);
// Acknowledge what was drawn at least once a second, so a quiet stream never stalls.
setInterval(() => {
  if (unacked > 0) ack();
}, 1000);

/** Shows the connection state: connecting, connected, reconnecting, offline, ended, … */
function setState(state, label = state) {
  connState.dataset.state = state;
  connState.textContent = label;
}

/** A message above the terminal, with an optional button or link. */
function showBanner(kind, text, action) {
  banner.className = `banner ${kind}`;
  bannerText.textContent = text;
  bannerAction.hidden = !action?.onClick;
  bannerLink.hidden = !action?.href;
  if (action?.onClick) {
    bannerAction.textContent = action.label;
    bannerAction.onclick = action.onClick;
  }
  if (action?.href) {
    bannerLink.textContent = action.label;
    bannerLink.href = action.href;
  }
  banner.hidden = false;
}

function hideBanner() {
  banner.hidden = true;
}

// --- The terminal ----------------------------------------------------------------------------

/** The colours of each theme (the person's `theme` setting). */
const THEMES = {
  dark: {
    background: '#0d1117',
    foreground: '#e6edf3',
    cursor: '#e6edf3',
    selectionBackground: '#264f78',
  },
  light: {
    background: '#ffffff',
    foreground: '#1f2328',
    cursor: '#1f2328',
    cursorAccent: '#ffffff',
    selectionBackground: '#b6d7ff',
  },
};

const term = new Terminal({
  allowProposedApi: true, // the unicode API that Unicode11Addon uses
  cursorBlink: true,
  convertEol: false,
  fontFamily: '"DejaVu Sans Mono", "Cascadia Mono", Menlo, Consolas, "Liberation Mono", monospace',
  fontSize: 14,
  scrollback: 5000,
  theme: THEMES.dark,
  disableStdin: observing,
});
const fit = new FitAddon();
term.loadAddon(fit);
term.loadAddon(new WebLinksAddon());
term.loadAddon(new Unicode11Addon());
const search = new SearchAddon();
term.loadAddon(search);
term.unicode.activeVersion = '11';
term.open(document.getElementById('terminal'));
// For tests and debugging from the console (the page's own module; no inline script).
window.portholeTerm = term;
document.title = `${nodeLabel} · Porthole`;

function showSize() {
  termSize.textContent = `${term.cols}×${term.rows}`;
  termSize.dataset.cols = String(term.cols);
  termSize.dataset.rows = String(term.rows);
}

let fitPending = false;
function scheduleFit() {
  if (fitPending) return;
  fitPending = true;
  requestAnimationFrame(() => {
    fitPending = false;
    try {
      fit.fit();
    } catch {
      // Not laid out (hidden): the next resize fits.
    }
    showSize();
  });
}
new ResizeObserver(scheduleFit).observe(document.getElementById('terminal'));
window.addEventListener('resize', scheduleFit);
fit.fit();
showSize();

// --- The connection --------------------------------------------------------------------------

const encoder = new TextEncoder();
let socket = null;
let ended = false;
let retries = 0;
let retryTimer = null;
/** The session output offset drawn on this page; null until the first sync. */
let offset = null;
/** Whether the current socket's sync arrived (bytes before it are a replay or snapshot). */
let synced = false;
/** Acknowledge at least every this many bytes drawn (well inside the gateway's window). */
const ACK_EVERY = 32 * 1024;
let unacked = 0;

function attachUrl() {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const since = offset === null ? '' : `?since=${offset}`;
  const query = observing ? '?mode=observe' : since;
  return `${scheme}//${location.host}${data.attachUrl}${query}`;
}

function ack() {
  unacked = 0;
  if (offset !== null) send(JSON.stringify({ type: 'ack', bytes: offset }));
}

function send(message) {
  if (socket?.readyState === WebSocket.OPEN) socket.send(message);
}

function sendBytes(bytes) {
  if (observing) return;
  for (let i = 0; i < bytes.length; i += MAX_INPUT_FRAME) {
    send(bytes.subarray(i, i + MAX_INPUT_FRAME));
  }
}

function sendSize() {
  if (observing) return; // the owner's terminal decides the size
  send(JSON.stringify({ type: 'resize', cols: term.cols, rows: term.rows }));
}

term.onData((text) => sendBytes(encoder.encode(text)));
term.onBinary((text) => sendBytes(Uint8Array.from(text, (c) => c.charCodeAt(0) & 0xff)));
term.onResize(() => {
  showSize();
  sendSize();
});

/** The session is over: say so, stop the clock, never reconnect. */
function sessionEnded(reason, at) {
  if (ended) return;
  ended = true;
  endedAt = at || Date.now() + clockOffset;
  tick();
  clearInterval(ticker);
  clearTimeout(retryTimer);
  setState('ended');
  if (terminateButton) terminateButton.hidden = true;
  const why = reason ? `: ${reason}` : '.';
  showBanner('ended', `The session has ended${why}`, { label: 'Open another', href: '/targets' });
  term.options.cursorBlink = false;
  term.write('\x1b[?25l'); // hide the cursor: nothing more will be typed here
  term.options.disableStdin = true;
}

function connect() {
  clearTimeout(retryTimer);
  if (ended) return;
  setState('connecting', retries ? 'reconnecting' : 'connecting');
  const ws = new WebSocket(attachUrl());
  ws.binaryType = 'arraybuffer';
  socket = ws;

  ws.addEventListener('open', () => {
    // What follows is the missing output or a snapshot that resets the screen itself.
    synced = false;
    if (observing) {
      showBanner('info', `Observing ${data.user || 'this session'} read-only: what you type is not sent.`);
    } else {
      hideBanner();
    }
    sendSize();
    term.focus();
  });

  ws.addEventListener('message', (event) => {
    if (typeof event.data !== 'string') {
      retries = 0;
      const bytes = new Uint8Array(event.data);
      const counted = synced;
      term.write(bytes, () => {
        if (!counted || socket !== ws) return;
        offset += bytes.length;
        unacked += bytes.length;
        if (unacked >= ACK_EVERY) ack();
      });
      return;
    }
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      return;
    }
    if (message.type === 'sync') {
      // Drawn in order after the bytes before it: the page is then at the gateway's offset.
      term.write('', () => {
        if (socket !== ws) return;
        offset = message.offset;
        synced = true;
        ack();
      });
      synced = true;
    } else if (message.type === 'resync') {
      // An interrupt flushed output this page was not sent: a redraw of the screen follows,
      // then a sync with the offset it stands for.
      synced = false;
    } else if (message.type === 'status') {
      if (message.state === 'connected') retries = 0;
      setState(message.state);
    } else if (message.type === 'closed') {
      sessionEnded(message.reason);
    } else if (message.type === 'refused') {
      showBanner('info', message.message);
    } else if (message.type === 'warning') {
      showBanner('warning', message.message);
    }
  });

  ws.addEventListener('close', (event) => {
    if (socket !== ws) return;
    socket = null;
    closed(event.code, event.reason);
  });
}

function closed(code, reason) {
  if (ended) return;
  switch (code) {
    case CLOSE_SESSION_ENDED:
      sessionEnded(reason);
      return;
    case CLOSE_REPLACED:
      setState('detached');
      showBanner('warning', 'This session was opened in another tab or window.', {
        label: 'Use it here',
        onClick: () => {
          retries = 0;
          connect();
        },
      });
      return;
    case CLOSE_NOT_ALLOWED:
      setState('signed-out', 'signed out');
      showBanner('error', 'Your sign-in has ended. The session keeps running.', {
        label: 'Sign in again',
        href: `/login?next=${encodeURIComponent(location.pathname)}`,
      });
      return;
    case CLOSE_HANDED_OVER:
      // The gateway is stopping and gave the session to another: reconnect at once, asking
      // for the output from the offset drawn; the load balancer picks a running gateway.
      retries = 0;
      setState('connecting', 'reconnecting');
      retryTimer = setTimeout(connect, 100);
      return;
    case CLOSE_BAD_MESSAGE:
      setState('error');
      showBanner('error', `The gateway refused a message from this page: ${reason || 'bad message'}`, {
        label: 'Reconnect',
        onClick: connect,
      });
      return;
    default:
      recover();
  }
}

/** After an unexpected disconnect: ask the API what became of the session, then retry. */
async function recover() {
  setState('offline', 'offline');
  const result = await api('GET', `/api/v1/sessions/${encodeURIComponent(sessionId)}`);
  if (result.status === 401) {
    setState('signed-out', 'signed out');
    showBanner('error', 'Your sign-in has ended. The session keeps running.', {
      label: 'Sign in again',
      href: `/login?next=${encodeURIComponent(location.pathname)}`,
    });
    return;
  }
  if (result.ok && !['starting', 'active'].includes(result.data?.state)) {
    sessionEnded(result.data.end_reason, result.data.ended_at);
    return;
  }
  const delay = RETRY_DELAYS[Math.min(retries, RETRY_DELAYS.length - 1)];
  retries += 1;
  const note = result.ok ? 'Connection to the gateway lost' : errorMessage(result, 'The gateway is unreachable');
  showBanner('warning', `${note}; reconnecting in ${Math.round(delay / 1000) || 1} s…`, {
    label: 'Reconnect now',
    onClick: connect,
  });
  retryTimer = setTimeout(connect, delay);
}

// --- Ending the session ----------------------------------------------------------------------

terminateButton?.addEventListener('click', async () => {
  if (!confirm(`End the session on ${nodeLabel}? Its shell and everything running in it end.`)) return;
  terminateButton.disabled = true;
  const result = await api('DELETE', `/api/v1/sessions/${encodeURIComponent(sessionId)}`);
  if (result.status === 401) return toSignIn();
  if (!result.ok && result.data?.error?.code !== 'session_ended') {
    terminateButton.disabled = false;
    showBanner('error', errorMessage(result, 'Ending the session failed.'));
  }
  // The gateway's "closed" message ends the page.
});

// --- Settings (GET/PUT /api/v1/me/settings, kept per person by the gateway) -----------------

const settingsPanel = document.getElementById('settings-panel');
const settingsOpen = document.getElementById('settings-open');
const settingsStatus = document.getElementById('settings-status');
const settingsError = document.getElementById('settings-error');
const termHost = document.getElementById('terminal');
/** What the bell does: none, visual or sound. */
let bell = 'none';
let audio = null;

/** Applies the settings object the API answered to the terminal, at once. */
function applySettings(s) {
  if (!s || typeof s !== 'object') return;
  const theme = THEMES[s.theme] ? s.theme : 'dark';
  term.options.fontSize = s.font_size;
  term.options.theme = THEMES[theme];
  term.options.cursorStyle = s.cursor_style;
  term.options.scrollback = s.scrollback;
  term.options.screenReaderMode = Boolean(s.screen_reader);
  bell = s.bell;
  root.dataset.theme = theme;
  for (const [key, value] of Object.entries(s)) {
    const input = document.getElementById(`set-${key}`);
    if (!input) continue;
    if (input.type === 'checkbox') input.checked = Boolean(value);
    else input.value = String(value);
  }
  scheduleFit();
  // For tests: the settings of this page are the person's (not the defaults of the page).
  root.dataset.settings = 'applied';
}

/** The settings panel's values, as the API takes them. */
function settingsOfForm() {
  const value = (key) => document.getElementById(`set-${key}`);
  return {
    font_size: Number(value('font_size').value),
    theme: value('theme').value,
    cursor_style: value('cursor_style').value,
    scrollback: Number(value('scrollback').value),
    bell: value('bell').value,
    screen_reader: value('screen_reader').checked,
  };
}

async function saveSettings() {
  showError(settingsError, '');
  settingsStatus.textContent = 'Saving…';
  const result = await api('PUT', '/api/v1/me/settings', settingsOfForm());
  if (result.status === 401) return toSignIn();
  if (!result.ok) {
    settingsStatus.textContent = '';
    showError(settingsError, errorMessage(result, 'Saving the settings failed.'));
    return;
  }
  applySettings(result.data);
  settingsStatus.textContent = 'Saved';
}

async function loadSettings() {
  const result = await api('GET', '/api/v1/me/settings');
  if (result.ok) applySettings(result.data);
  else root.dataset.settings = 'defaults';
}

function toggleSettings(open = settingsPanel.hidden) {
  settingsPanel.hidden = !open;
  settingsOpen.setAttribute('aria-expanded', String(open));
  settingsStatus.textContent = '';
  if (open) document.getElementById('set-font_size').focus();
  else term.focus();
  scheduleFit();
}

settingsOpen.addEventListener('click', () => toggleSettings());
document.getElementById('settings-close').addEventListener('click', () => toggleSettings(false));
settingsPanel.addEventListener('submit', (event) => {
  event.preventDefault();
  saveSettings();
});
// A choice from a list or the checkbox is saved as soon as it is made.
for (const input of settingsPanel.querySelectorAll('select, input[type="checkbox"]')) {
  input.addEventListener('change', saveSettings);
}
settingsPanel.addEventListener('keydown', (event) => {
  if (event.key === 'Escape') toggleSettings(false);
});

term.onBell(() => {
  if (bell === 'visual') {
    termHost.classList.remove('bell-flash');
    void termHost.offsetWidth; // restart the flash
    termHost.classList.add('bell-flash');
    setTimeout(() => termHost.classList.remove('bell-flash'), 150);
  } else if (bell === 'sound') {
    try {
      audio ??= new AudioContext();
      const tone = audio.createOscillator();
      const gain = audio.createGain();
      gain.gain.value = 0.05;
      tone.frequency.value = 880;
      tone.connect(gain).connect(audio.destination);
      tone.start();
      tone.stop(audio.currentTime + 0.08);
    } catch {
      // No audio here: the bell stays silent.
    }
  }
});

// --- Find in the scrollback (xterm.js's search addon) ----------------------------------------

const findBar = document.getElementById('find-bar');
const findInput = document.getElementById('find-input');
const findCount = document.getElementById('find-count');
/** How matches are highlighted (the addon wants #RRGGBB colours). */
const FIND_OPTIONS = {
  decorations: {
    matchBackground: '#5c4813',
    matchBorder: '#d29922',
    matchOverviewRuler: '#d29922',
    activeMatchBackground: '#9e6a03',
    activeMatchBorder: '#f2cc60',
    activeMatchColorOverviewRuler: '#f2cc60',
  },
};

search.onDidChangeResults(({ resultIndex, resultCount }) => {
  findBar.dataset.count = String(resultCount);
  findBar.dataset.index = String(resultIndex);
  if (!findInput.value) findCount.textContent = '';
  else if (resultCount === 0) findCount.textContent = 'No matches';
  else if (resultIndex < 0) findCount.textContent = `${resultCount}+ matches`;
  else findCount.textContent = `${resultIndex + 1} of ${resultCount}`;
});

function openFind() {
  findBar.hidden = false;
  findInput.focus();
  findInput.select();
  scheduleFit();
}

function closeFind() {
  search.clearDecorations();
  term.clearSelection();
  findBar.hidden = true;
  findCount.textContent = '';
  scheduleFit();
  term.focus();
}

function find(backwards, incremental = false) {
  const text = findInput.value;
  if (!text) {
    search.clearDecorations();
    findCount.textContent = '';
    return;
  }
  const found = backwards
    ? search.findPrevious(text, FIND_OPTIONS)
    : search.findNext(text, { ...FIND_OPTIONS, incremental });
  if (!found) findCount.textContent = 'No matches';
}

document.getElementById('find-open').addEventListener('click', openFind);
document.getElementById('find-next').addEventListener('click', () => find(false));
document.getElementById('find-prev').addEventListener('click', () => find(true));
document.getElementById('find-close').addEventListener('click', closeFind);
findBar.addEventListener('submit', (event) => event.preventDefault());
findInput.addEventListener('input', () => find(false, true));
findInput.addEventListener('keydown', (event) => {
  if (event.key === 'Enter') {
    event.preventDefault();
    find(event.shiftKey);
  } else if (event.key === 'Escape') {
    event.preventDefault();
    closeFind();
  }
});
// Ctrl+Shift+F anywhere on the page, the terminal included: caught before xterm.js sees it
// (capture phase), so it is not sent to the shell.
window.addEventListener(
  'keydown',
  (event) => {
    const isF = event.code === 'KeyF' || event.key === 'F' || event.key === 'f';
    if (event.ctrlKey && event.shiftKey && !event.altKey && isF) {
      event.preventDefault();
      event.stopPropagation();
      openFind();
    }
  },
  true,
);

// --- Start -----------------------------------------------------------------------------------

loadSettings();

if (data.live !== 'true') {
  sessionEnded(data.endReason || `the session is ${data.state}`, endedAt);
} else if (observing) {
  connect();
} else if (data.canAttach !== 'true') {
  setState('not-attached', 'not attached');
  showBanner('info', 'Only the person who opened this session can attach to it.');
} else {
  connect();
}
