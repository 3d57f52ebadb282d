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
import { api, errorMessage, toSignIn } from './common.js';

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

const term = new Terminal({
  allowProposedApi: true, // the unicode API that Unicode11Addon uses
  cursorBlink: true,
  convertEol: false,
  fontFamily: '"DejaVu Sans Mono", "Cascadia Mono", Menlo, Consolas, "Liberation Mono", monospace',
  fontSize: 14,
  scrollback: 5000,
  theme: {
    background: '#0d1117',
    foreground: '#e6edf3',
    cursor: '#e6edf3',
    selectionBackground: '#264f78',
  },
  disableStdin: observing,
});
const fit = new FitAddon();
term.loadAddon(fit);
term.loadAddon(new WebLinksAddon());
term.loadAddon(new Unicode11Addon());
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

// --- Start -----------------------------------------------------------------------------------

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
