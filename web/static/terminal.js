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
// Sharing (`data-mode` "write" or "read"): a person the owner invited into their session. The
// socket asks for nothing special (the gateway knows the invitation); they get the screen, then
// the output; what a "write" participant types reaches the shell, a "read" one's is refused.
// They never resize the terminal: the owner's page decides its size, and an observer's or a
// participant's terminal takes it ({"type":"size","cols","rows"} when they join and whenever
// it changes) rather than fitting its own window (it scrolls when the window is smaller).
// Everyone attached gets
// {"type":"presence","people":[{"name","mode"}],"last_typed"} whenever that changes; the owner
// gets a Share button (invite by name, list, revoke). A revoked participant's socket closes with
// 4005 and the page says so.
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
import { LigaturesAddon } from './vendor/xterm/addon-ligatures.mjs';
import { api, errorMessage, showError, toSignIn } from './common.js';
import { isMultiLine, pastePieces, previewLines } from './paste.js';
import { ctrlOf, keyBytes } from './keys.js';
import { initTabs } from './tabs.js';

/** WebSocket close codes of the gateway (server/src/gateway/attach.rs). */
const CLOSE_SESSION_ENDED = 4000;
const CLOSE_REPLACED = 4001;
const CLOSE_NOT_ALLOWED = 4003;
const CLOSE_REVOKED = 4005;
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
/** `write` or `read` when this person was invited into someone else's session; else null. */
let joinMode = ['write', 'read'].includes(data.mode) ? data.mode : null;
/**
 * Whether this terminal takes the owner's size (an observer, a participant) instead of fitting
 * its window: the shell has the owner's size, and the screen is drawn for it.
 */
const followsOwner = observing || joinMode !== null;
/** Whether what is typed here is not sent (an observer, a read-only participant). */
const readOnly = () => observing || joinMode === 'read';
/** The signed-in person's name (the top bar). */
const me = document.getElementById('user-name')?.textContent?.trim() ?? '';
/** Whether the policy lets this session's terminal copy and paste (the role's `clipboard`). */
const clipboardAllowed = data.clipboard !== 'false';
const nodeLabel = data.nodeName || data.target;
const connState = document.getElementById('conn-state');
const elapsed = document.getElementById('elapsed');
const termSize = document.getElementById('term-size');
const banner = document.getElementById('banner');
const bannerText = document.getElementById('banner-text');
const bannerAction = document.getElementById('banner-action');
const bannerLink = document.getElementById('banner-link');
const terminateButton = document.getElementById('terminate');
/** Whether this page is one tab of another terminal page (`?embed=1`, in a frame). */
const embedded = data.embed === 'true';
/**
 * Whether this session's tab is hidden (another tab of the page is shown): it keeps receiving,
 * drawing and acknowledging output, but it is not fitted to a size until it is shown again,
 * and the page's keys (find, Ctrl+W…) are not its own.
 */
let tabHidden = Boolean(embedded && tabHost()?.isHidden(data.sessionId));

/** Where to come back to after signing in again: the whole page (all its tabs). */
function pageAddress() {
  try {
    if (embedded) return window.top.location.pathname + window.top.location.search;
  } catch {
    // Not the gateway's page around: this one.
  }
  return location.pathname;
}

/** The tab strip of the page this session is shown in (tabs.js), if any. */
function tabHost() {
  try {
    return window.parent.portholeTabs;
  } catch {
    return undefined;
  }
}

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
  tabHost()?.update(sessionId, { state, label });
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
    // In a tab's frame, a link leaves the whole page (other pages may not be framed).
    if (embedded) bannerLink.target = '_top';
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

/**
 * The font stacks of the `font_family` setting. Both end with the Nerd Font symbols (powerline
 * arrows, icons: glyphs no text font has) and the machine's monospace fonts for the rest (box
 * drawing, CJK), which xterm.js fits into its cells.
 */
const FONTS = {
  system: '"DejaVu Sans Mono", "Cascadia Mono", Menlo, Consolas, "Liberation Mono", "Pure Nerd Font", monospace',
  'jetbrains-mono': '"JetBrains Mono", "Pure Nerd Font", "DejaVu Sans Mono", Menlo, Consolas, monospace',
};

const term = new Terminal({
  allowProposedApi: true, // the unicode API that Unicode11Addon uses
  cursorBlink: true,
  convertEol: false,
  fontFamily: FONTS.system,
  fontSize: 14,
  scrollback: 5000,
  theme: THEMES.dark,
  disableStdin: readOnly(),
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
  if (fitPending || tabHidden || followsOwner) return;
  fitPending = true;
  requestAnimationFrame(() => {
    fitPending = false;
    if (tabHidden) return;
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
if (followsOwner) {
  document.getElementById('terminal').classList.add('follows');
} else if (!tabHidden) {
  fit.fit();
}
showSize();

/** The owner's terminal size, sent by the gateway to an observer or a participant. */
function takeSize(cols, rows) {
  if (!followsOwner || !Number.isInteger(cols) || !Number.isInteger(rows)) return;
  if (cols < 1 || rows < 1 || (cols === term.cols && rows === term.rows)) return;
  term.resize(cols, rows);
}

// --- The connection --------------------------------------------------------------------------

const encoder = new TextEncoder();
let socket = null;
let ended = false;
/** Whether this page let go of the session (its tab was closed): it never reconnects. */
let detachedHere = false;
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
  // A participant always gets the screen first, as an observer does.
  const query = observing ? '?mode=observe' : joinMode ? '' : since;
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
  if (readOnly()) return;
  for (let i = 0; i < bytes.length; i += MAX_INPUT_FRAME) {
    send(bytes.subarray(i, i + MAX_INPUT_FRAME));
  }
}

function sendSize() {
  if (followsOwner) return; // the owner's terminal decides the size
  send(JSON.stringify({ type: 'resize', cols: term.cols, rows: term.rows }));
}

term.onData((text) => {
  // The key bar's sticky Ctrl applies to the next key typed (a phone's keyboard has no Ctrl).
  if (stickyCtrl && text.length === 1) {
    setStickyCtrl(false);
    sendBytes(encoder.encode(ctrlOf(text) ?? text));
    return;
  }
  sendBytes(encoder.encode(text));
});
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
  if (document.getElementById('share-open')) document.getElementById('share-open').hidden = true;
  const why = reason ? `: ${reason}` : '.';
  showBanner('ended', `The session has ended${why}`, { label: 'Open another', href: '/targets' });
  term.options.cursorBlink = false;
  term.write('\x1b[?25l'); // hide the cursor: nothing more will be typed here
  term.options.disableStdin = true;
  guardUnload(false);
  showKeyBar();
}

/**
 * Shows who observes this session (the gateway tells the owner's page whenever that changes;
 * observing is read-only and audited): "root is watching", or "3 watching" with the names in
 * the tooltip and for screen readers.
 */
function showWatchers(names) {
  const element = document.getElementById('watchers');
  if (!element || !Array.isArray(names)) return;
  const unique = [...new Set(names.map(String))];
  element.dataset.names = unique.join(',');
  if (unique.length === 0) {
    element.hidden = true;
    element.textContent = '';
    element.removeAttribute('title');
    element.removeAttribute('aria-label');
    return;
  }
  const all = `Watching this session (read-only): ${unique.join(', ')}`;
  element.textContent = unique.length === 1 ? `${unique[0]} is watching` : `${unique.length} watching`;
  element.title = all;
  element.setAttribute('aria-label', all);
  element.hidden = false;
}

const MODE_WORDS = { owner: 'owner', write: 'types', read: 'watches', observe: 'observes' };

/**
 * Shows who is attached and how ("Here: alice (owner), bob (types)") and who typed last, from
 * the gateway's presence message. A participant whose mode the owner changed follows it.
 */
function showPresence(message) {
  const element = document.getElementById('presence');
  const last = document.getElementById('last-typed');
  if (!element || !last) return;
  const people = Array.isArray(message?.people) ? message.people : [];
  element.dataset.people = people.map((p) => `${p.name}:${p.mode}`).join(',');
  if (people.length > 1 || (joinMode && people.length > 0)) {
    const text = people.map((p) => `${p.name} (${MODE_WORDS[p.mode] ?? p.mode})`).join(', ');
    element.textContent = `Here: ${text}`;
    element.title = `Attached to this session now: ${text}`;
    element.hidden = false;
  } else {
    element.hidden = true;
    element.textContent = '';
  }
  const typed = typeof message?.last_typed === 'string' ? message.last_typed : '';
  last.dataset.name = typed;
  last.textContent = typed ? `last typed by ${typed === me ? 'you' : typed}` : '';
  last.title = typed ? `The latest input came from ${typed}` : '';
  // Alone, one's own typing needs no saying.
  last.hidden = !typed || (typed === me && people.length < 2 && !joinMode);
  if (joinMode) {
    const mine = people.find((p) => p.name === me && (p.mode === 'write' || p.mode === 'read'));
    if (mine && mine.mode !== joinMode) {
      joinMode = mine.mode;
      root.dataset.mode = joinMode;
      term.options.disableStdin = readOnly();
      showJoinBanner();
      showKeyBar();
    }
  }
}

/** What a participant is told when their socket opens (or their mode changes). */
function showJoinBanner() {
  const owner = data.user || 'the owner';
  if (joinMode === 'write') {
    showBanner('info', `You joined ${owner}'s session: what you type goes to the shell, and ${owner} sees it.`);
  } else {
    showBanner('info', `You joined ${owner}'s session read-only: what you type is not sent.`);
  }
}

function connect() {
  clearTimeout(retryTimer);
  if (ended || detachedHere) return;
  setState('connecting', retries ? 'reconnecting' : 'connecting');
  // A new socket starts with nobody watching: the gateway tells this page who is, if anyone.
  showWatchers([]);
  const ws = new WebSocket(attachUrl());
  ws.binaryType = 'arraybuffer';
  socket = ws;

  ws.addEventListener('open', () => {
    guardUnload(!observing && !joinMode);
    // What follows is the missing output or a snapshot that resets the screen itself.
    synced = false;
    if (observing) {
      showBanner('info', `Observing ${data.user || 'this session'} read-only: what you type is not sent.`);
    } else if (joinMode) {
      showJoinBanner();
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
    } else if (message.type === 'observers') {
      showWatchers(message.names);
    } else if (message.type === 'presence') {
      showPresence(message);
    } else if (message.type === 'size') {
      takeSize(message.cols, message.rows);
    }
  });

  ws.addEventListener('close', (event) => {
    if (socket !== ws) return;
    socket = null;
    closed(event.code, event.reason);
  });
}

function closed(code, reason) {
  if (ended || detachedHere) return;
  switch (code) {
    case CLOSE_SESSION_ENDED:
      sessionEnded(reason);
      return;
    case CLOSE_REPLACED:
      guardUnload(false); // the shell lives on in the other tab
      setState('detached');
      showBanner('warning', 'This session was opened in another tab or window.', {
        label: 'Use it here',
        onClick: () => {
          retries = 0;
          connect();
        },
      });
      return;
    case CLOSE_REVOKED:
      // The owner stopped sharing: nothing to reconnect to.
      ended = true;
      clearTimeout(retryTimer);
      setState('revoked', 'not shared');
      showBanner('error', reason || `${data.user || 'The owner'} stopped sharing the session with you.`, {
        label: 'Back to Live',
        href: '/live',
      });
      term.options.disableStdin = true;
      showPresence({ people: [], last_typed: null });
      return;
    case CLOSE_NOT_ALLOWED:
      if (joinMode && reason && !reason.includes('sign-in')) {
        setState('error', 'not allowed');
        showBanner('error', reason);
        return;
      }
      setState('signed-out', 'signed out');
      showBanner('error', 'Your sign-in has ended. The session keeps running.', {
        label: 'Sign in again',
        href: `/login?next=${encodeURIComponent(pageAddress())}`,
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
      href: `/login?next=${encodeURIComponent(pageAddress())}`,
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

let ligatures = null;
let fontWanted = '';

/**
 * Sets the terminal's font. A web font is loaded first (regular and bold), so that xterm.js
 * measures its cells with the font it draws with; the ligatures addon joins the character
 * sequences that the font draws as one (->, =>, !=…) where the font has them.
 */
async function applyFont(family, size) {
  const key = `${family} ${size}`;
  fontWanted = key;
  root.dataset.font = 'loading';
  if (family !== 'system') {
    const name = FONTS[family].split(',')[0];
    try {
      await Promise.all([
        document.fonts.load(`${size}px ${name}`),
        document.fonts.load(`bold ${size}px ${name}`),
        document.fonts.load(`${size}px "Pure Nerd Font"`, '\ue0b0'),
      ]);
    } catch {
      // Not loaded: the next fonts in the stack draw.
    }
  }
  if (fontWanted !== key) return; // a later choice won
  term.options.fontFamily = FONTS[family];
  term.options.fontSize = size;
  if (family === 'system') {
    ligatures?.dispose();
    ligatures = null;
  } else if (!ligatures) {
    ligatures = new LigaturesAddon();
    term.loadAddon(ligatures);
  }
  root.dataset.font = family;
  scheduleFit();
}

/** Applies the settings object the API answered to the terminal, at once. */
function applySettings(s) {
  if (!s || typeof s !== 'object') return;
  const theme = THEMES[s.theme] ? s.theme : 'dark';
  applyFont(FONTS[s.font_family] ? s.font_family : 'system', s.font_size);
  term.options.theme = THEMES[theme];
  term.options.cursorStyle = s.cursor_style;
  term.options.scrollback = s.scrollback;
  term.options.screenReaderMode = Boolean(s.screen_reader);
  bell = s.bell;
  copyOnSelect = Boolean(s.copy_on_select);
  keyBarMode = ['on', 'off'].includes(s.key_bar) ? s.key_bar : 'auto';
  showKeyBar();
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
    copy_on_select: value('copy_on_select').checked,
    key_bar: value('key_bar').value,
    font_family: value('font_family').value,
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
    if (tabHidden) return;
    if (event.ctrlKey && event.shiftKey && !event.altKey && isF) {
      event.preventDefault();
      event.stopPropagation();
      openFind();
    }
  },
  true,
);

// --- Copy and paste --------------------------------------------------------------------------
//
// Copy: Ctrl+Shift+C, the context menu, or on selection (the person's `copy_on_select`).
// Paste: Ctrl+Shift+V (or Ctrl+V, Shift+Insert: the browser's own paste event), the context
// menu, or text dropped on the terminal. Every paste goes through `pasteText`: a paste of
// several lines asks first, unless the program turned bracketed paste on (then the program
// sees the paste as one, and the text is wrapped as xterm does); the text is sent in pieces
// under the gateway's message limit, each waiting for the socket to drain, so a large paste
// never floods the page or the gateway.
//
// A role with `clipboard = false` turns all of it off for the session (`data-clipboard`): the
// page stops copy, cut, paste and drop events on the terminal and says so. The page cannot stop
// the browser's own tools (developer tools, screenshots, reading the screen): docs/security.md.

/** Whether a selection is copied as it is made (the person's `copy_on_select` setting). */
let copyOnSelect = false;
/** The most bytes queued in the socket before the next piece of a paste waits. */
const PASTE_HIGH_WATER = 64 * 1024;
/** Lines of a paste shown in its confirmation. */
const PASTE_PREVIEW_LINES = 5;

/** Writes `text` to the clipboard; true when the browser took it. */
async function copyText(text) {
  if (!clipboardAllowed || !text) return false;
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // Without the asynchronous clipboard (an insecure origin): the old way, which works
    // within a key press or click.
    const area = document.createElement('textarea');
    area.value = text;
    area.setAttribute('readonly', '');
    area.style.position = 'fixed';
    area.style.opacity = '0';
    document.body.append(area);
    area.select();
    let done = false;
    try {
      done = document.execCommand('copy');
    } catch {
      done = false;
    }
    area.remove();
    term.focus();
    return done;
  }
}

function copySelection() {
  const text = term.getSelection();
  if (text) copyText(text);
}

let selectionTimer = null;
term.onSelectionChange(() => {
  if (!copyOnSelect || !clipboardAllowed) return;
  // A selection made by dragging changes many times: copy where it settles.
  clearTimeout(selectionTimer);
  selectionTimer = setTimeout(copySelection, 150);
});

/** Waits until the socket has sent most of what it holds (or is gone: false). */
async function drained(ws) {
  while (ws.readyState === WebSocket.OPEN && ws.bufferedAmount > PASTE_HIGH_WATER) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return ws.readyState === WebSocket.OPEN;
}

/** The dialog that shows the first lines of a paste of several lines: Paste or Cancel. */
const pasteDialog = document.createElement('dialog');
pasteDialog.id = 'paste-dialog';
pasteDialog.className = 'paste-dialog';
pasteDialog.setAttribute('aria-labelledby', 'paste-title');
pasteDialog.innerHTML = `
  <form method="dialog">
    <h2 id="paste-title">Paste several lines?</h2>
    <p id="paste-summary"></p>
    <pre id="paste-preview" role="region" aria-label="The lines to paste" tabindex="0"></pre>
    <div class="actions">
      <button type="submit" value="cancel" id="paste-cancel" class="small">Cancel</button>
      <button type="submit" value="paste" id="paste-confirm" class="small primary">Paste</button>
    </div>
  </form>`;
root.append(pasteDialog);

/** Asks before pasting `text` (several lines); resolves true to paste. */
function confirmPaste(text) {
  if (pasteDialog.open) return Promise.resolve(false); // one question at a time
  const { lines, total } = previewLines(text, PASTE_PREVIEW_LINES);
  const more = total - lines.length;
  document.getElementById('paste-summary').textContent =
    `The text has ${total} lines; each line break runs what comes before it in the shell.` +
    (more > 0 ? ` The first ${lines.length} are shown.` : '');
  document.getElementById('paste-preview').textContent =
    lines.join('\n') + (more > 0 ? `\n… and ${more} more line${more === 1 ? '' : 's'}` : '');
  return new Promise((resolve) => {
    pasteDialog.returnValue = 'cancel';
    pasteDialog.addEventListener(
      'close',
      () => {
        term.focus();
        resolve(pasteDialog.returnValue === 'paste');
      },
      { once: true },
    );
    pasteDialog.showModal();
    document.getElementById('paste-cancel').focus();
  });
}

/** Sends `text` to the shell as a paste (see above). */
async function pasteText(text) {
  if (!clipboardAllowed || readOnly() || ended || !text) return;
  const bracketed = Boolean(term.modes.bracketedPasteMode);
  if (!bracketed && isMultiLine(text) && !(await confirmPaste(text))) return;
  const ws = socket;
  if (ws?.readyState !== WebSocket.OPEN) {
    showBanner('warning', 'Not connected to the shell: the paste was not sent.');
    return;
  }
  const pieces = pastePieces(text, { bracketed, limit: MAX_INPUT_FRAME });
  root.dataset.paste = 'sending';
  term.scrollToBottom();
  for (const [i, piece] of pieces.entries()) {
    if (socket !== ws || !(await drained(ws))) {
      showBanner('warning', `The paste was cut short: the connection was lost after ${i} of ${pieces.length} pieces.`);
      break;
    }
    ws.send(piece);
  }
  root.dataset.paste = 'sent';
}

/** Reads the clipboard for the context menu's Paste (the browser may ask, or refuse). */
async function pasteFromClipboard() {
  let text;
  try {
    text = await navigator.clipboard.readText();
  } catch {
    showBanner('info', 'The browser did not let the page read the clipboard: press Ctrl+Shift+V (or Shift+Insert) in the terminal to paste.');
    return;
  }
  term.focus();
  await pasteText(text);
}

/**
 * Whether the browser gave the terminal a paste since the person last pressed a key or a
 * pointer: one press pastes once. Chromium delivers the paste of one Ctrl+Shift+V more than once
 * (three times, headless: tests/browser_clipboard.rs); the repeats are dropped.
 */
let pastedSinceInput = false;
for (const type of ['keydown', 'pointerdown']) {
  window.addEventListener(type, () => { pastedSinceInput = false; }, true);
}

// Capture phase on the terminal's host: before xterm.js's own handlers, which would send the
// text at once (no question, no pieces).
termHost.addEventListener(
  'paste',
  (event) => {
    event.preventDefault();
    event.stopPropagation();
    if (event.isTrusted) {
      if (pastedSinceInput) return;
      pastedSinceInput = true;
    }
    if (clipboardAllowed) pasteText(event.clipboardData?.getData('text/plain') ?? '');
  },
  true,
);
for (const type of ['copy', 'cut']) {
  termHost.addEventListener(
    type,
    (event) => {
      if (clipboardAllowed) return; // xterm.js copies its selection
      event.preventDefault();
      event.stopPropagation();
    },
    true,
  );
}
/** Whether a drag carries text (and no files: dropping files is not pasting). */
function draggedText(event) {
  const types = Array.from(event.dataTransfer?.types ?? []);
  return types.includes('text/plain') && !types.includes('Files');
}
termHost.addEventListener(
  'dragover',
  (event) => {
    if (!draggedText(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = clipboardAllowed && !readOnly() ? 'copy' : 'none';
  },
  true,
);
termHost.addEventListener(
  'drop',
  (event) => {
    if (!draggedText(event)) return;
    event.preventDefault();
    event.stopPropagation();
    if (clipboardAllowed) pasteText(event.dataTransfer.getData('text/plain'));
  },
  true,
);

if (!clipboardAllowed) {
  // Said once where it stays visible: the status bar.
  const note = document.createElement('span');
  note.id = 'clipboard-note';
  note.className = 'clipboard-note';
  note.textContent = 'Copy and paste off';
  note.title = 'Your role does not allow copy and paste in this session (policy: clipboard = false).';
  document.getElementById('find-open')?.before(note);
  root.dataset.clipboard = 'false';
}

// --- The context menu: Copy, Paste, Select all -----------------------------------------------

const menu = document.createElement('div');
menu.id = 'term-menu';
menu.className = 'term-menu';
menu.setAttribute('role', 'menu');
menu.setAttribute('aria-label', 'Terminal');
menu.hidden = true;
menu.innerHTML = `
  <button type="button" role="menuitem" data-action="copy">Copy <kbd>Ctrl+Shift+C</kbd></button>
  <button type="button" role="menuitem" data-action="paste">Paste <kbd>Ctrl+Shift+V</kbd></button>
  <button type="button" role="menuitem" data-action="select-all">Select all</button>
  <p class="muted" role="none" hidden>Copy and paste are off for this session (policy).</p>`;
root.append(menu);
const menuItems = () => Array.from(menu.querySelectorAll('[role="menuitem"]:not([aria-disabled="true"])'));

function openMenu(x, y) {
  const copyItem = menu.querySelector('[data-action="copy"]');
  const pasteItem = menu.querySelector('[data-action="paste"]');
  copyItem.setAttribute('aria-disabled', String(!clipboardAllowed || !term.hasSelection()));
  pasteItem.setAttribute('aria-disabled', String(!clipboardAllowed || readOnly() || ended));
  menu.querySelector('p').hidden = clipboardAllowed;
  menu.hidden = false;
  const box = menu.getBoundingClientRect();
  menu.style.left = `${Math.max(0, Math.min(x, window.innerWidth - box.width))}px`;
  menu.style.top = `${Math.max(0, Math.min(y, window.innerHeight - box.height))}px`;
  (menuItems()[0] ?? menu.querySelector('[data-action="select-all"]')).focus();
}

function closeMenu(refocus = true) {
  if (menu.hidden) return;
  menu.hidden = true;
  if (refocus) term.focus();
}

termHost.addEventListener(
  'contextmenu',
  (event) => {
    event.preventDefault();
    event.stopPropagation();
    // From the keyboard (the menu key, Shift+F10) there is no pointer: the terminal's corner.
    const fromKeyboard = event.button !== 2 || (event.clientX === 0 && event.clientY === 0);
    const host = termHost.getBoundingClientRect();
    openMenu(fromKeyboard ? host.left + 16 : event.clientX, fromKeyboard ? host.top + 16 : event.clientY);
  },
  true,
);
menu.addEventListener('click', (event) => {
  const item = event.target.closest('[role="menuitem"]');
  if (!item || item.getAttribute('aria-disabled') === 'true') return;
  closeMenu();
  const action = item.dataset.action;
  if (action === 'copy') copySelection();
  else if (action === 'paste') pasteFromClipboard();
  else if (action === 'select-all') term.selectAll();
});
menu.addEventListener('keydown', (event) => {
  const items = menuItems();
  const at = items.indexOf(document.activeElement);
  const move = { ArrowDown: 1, ArrowUp: -1 }[event.key];
  if (move) {
    event.preventDefault();
    items[(at + move + items.length) % items.length]?.focus();
  } else if (event.key === 'Home' || event.key === 'End') {
    event.preventDefault();
    items[event.key === 'Home' ? 0 : items.length - 1]?.focus();
  } else if (event.key === 'Escape') {
    event.preventDefault();
    closeMenu();
  } else if (event.key === 'Tab') {
    closeMenu(false);
  }
});
document.addEventListener('pointerdown', (event) => {
  if (!menu.hidden && !menu.contains(event.target)) closeMenu(false);
});

// --- Keys: Ctrl+Shift+C / Ctrl+Shift+V, and Ctrl+W, Ctrl+T, Ctrl+N for the shell ---------------

/** The control bytes of the browser shortcuts the shell wants, by `KeyboardEvent.code`. */
const SHELL_KEYS = { KeyW: '\x17', KeyT: '\x14', KeyN: '\x0e' };

term.attachCustomKeyEventHandler((event) => {
  if (event.type !== 'keydown' || !event.ctrlKey || !event.shiftKey || event.altKey || event.metaKey) return true;
  if (event.code === 'KeyL') {
    // The way out of the terminal for the keyboard (Tab itself goes to the shell).
    event.preventDefault();
    leaveTerminal();
    return false;
  }
  if (event.code === 'KeyC') {
    // Copy (and never the browser's element picker).
    event.preventDefault();
    if (clipboardAllowed) copySelection();
    return false;
  }
  if (event.code === 'KeyV') {
    // The browser's own paste follows, as a paste event (handled above); none when forbidden.
    if (!clipboardAllowed) event.preventDefault();
    return false;
  }
  return true;
});

// Ctrl+W, Ctrl+T and Ctrl+N close the tab, open one and open a window in a browser; in a shell
// they erase a word, swap characters and go to the next history line. Where the browser gives
// the page the key press (full screen with the keyboard locked, an installed app window, some
// browsers), it goes to the shell, not to the browser.
window.addEventListener(
  'keydown',
  (event) => {
    const bytes = SHELL_KEYS[event.code];
    if (!bytes || !event.ctrlKey || event.shiftKey || event.altKey || event.metaKey) return;
    if (tabHidden || readOnly() || ended || !termHost.contains(document.activeElement)) return;
    event.preventDefault();
    event.stopPropagation();
    sendBytes(encoder.encode(bytes));
  },
  true,
);

// Full screen, with the keyboard locked where the browser can (the Keyboard Lock API): the
// browser then gives the page Ctrl+W, Ctrl+T, Ctrl+N and Esc (holding Esc leaves full screen).
const fullButton = document.getElementById('fullscreen');
/** The keys locked in full screen, by `KeyboardEvent.code`. */
const LOCKED_KEYS = [...Object.keys(SHELL_KEYS), 'Escape'];
if (fullButton && !document.fullscreenEnabled) fullButton.hidden = true;
fullButton?.addEventListener('click', async () => {
  try {
    if (document.fullscreenElement) {
      await document.exitFullscreen();
    } else {
      await document.documentElement.requestFullscreen();
      await navigator.keyboard?.lock?.(LOCKED_KEYS);
    }
  } catch {
    showBanner('info', 'The browser did not allow full screen here.');
  }
  term.focus();
});
document.addEventListener('fullscreenchange', () => {
  const full = Boolean(document.fullscreenElement);
  if (!full) navigator.keyboard?.unlock?.();
  fullButton?.setAttribute('aria-pressed', String(full));
  scheduleFit();
});

/** The warning before leaving the page while the shell is live here. */
function beforeUnload(event) {
  event.preventDefault();
  event.returnValue = ''; // older browsers want it set
  return '';
}
let unloadGuarded = false;
function guardUnload(on) {
  if (on === unloadGuarded) return;
  unloadGuarded = on;
  if (on) window.addEventListener('beforeunload', beforeUnload);
  else window.removeEventListener('beforeunload', beforeUnload);
  root.dataset.unloadGuard = String(on);
}

// --- The key bar (touch screens): Esc, Tab, Ctrl, arrows and a few characters -----------------

/** `auto` (on touch screens), `on` or `off`: the person's `key_bar` setting. */
let keyBarMode = 'auto';
/** Whether the key bar's Ctrl is held for the next key. */
let stickyCtrl = false;
const touchScreen = window.matchMedia('(pointer: coarse)');

const keyBar = document.createElement('div');
keyBar.id = 'key-bar';
keyBar.className = 'key-bar';
keyBar.setAttribute('role', 'toolbar');
keyBar.setAttribute('aria-label', 'Terminal keys');
keyBar.hidden = true;
const KEY_BAR = [
  ['esc', 'Esc', 'Esc (Escape)'],
  ['tab', 'Tab', 'Tab'],
  ['ctrl', 'Ctrl', 'Ctrl (Control), for the next key'],
  ['left', '←', 'Left arrow'],
  ['up', '↑', 'Up arrow'],
  ['down', '↓', 'Down arrow'],
  ['right', '→', 'Right arrow'],
  ['|', '|', 'Vertical bar'],
  ['~', '~', 'Tilde'],
  ['/', '/', 'Slash'],
  ['-', '-', 'Hyphen'],
];
for (const [key, label, name] of KEY_BAR) {
  const button = document.createElement('button');
  button.type = 'button';
  button.className = 'small';
  button.dataset.key = key;
  button.textContent = label;
  button.setAttribute('aria-label', name);
  if (key === 'ctrl') button.setAttribute('aria-pressed', 'false');
  keyBar.append(button);
}
termHost.after(keyBar);

function setStickyCtrl(on) {
  stickyCtrl = on;
  keyBar.querySelector('[data-key="ctrl"]').setAttribute('aria-pressed', String(on));
}

// A tap must not take the focus from the terminal (a phone would hide its keyboard).
keyBar.addEventListener('pointerdown', (event) => {
  if (event.target.closest('button')) event.preventDefault();
});
keyBar.addEventListener('click', (event) => {
  const key = event.target.closest('button')?.dataset.key;
  if (!key) return;
  if (key === 'ctrl') {
    setStickyCtrl(!stickyCtrl);
  } else {
    const bytes = keyBytes(key, { ctrl: stickyCtrl, appCursor: term.modes.applicationCursorKeysMode });
    setStickyCtrl(false);
    sendBytes(encoder.encode(bytes));
  }
  term.focus();
});

/** Shows the key bar when the setting or the screen asks for it (never for an observer). */
function showKeyBar() {
  const wanted = keyBarMode === 'on' || (keyBarMode === 'auto' && (touchScreen.matches || navigator.maxTouchPoints > 0));
  const shown = wanted && !readOnly() && !ended;
  if (keyBar.hidden === !shown) return;
  keyBar.hidden = !shown;
  if (!shown) setStickyCtrl(false);
  scheduleFit();
}
touchScreen.addEventListener('change', showKeyBar);
showKeyBar();

// --- Leaving the terminal by keyboard --------------------------------------------------------
//
// Tab and Shift+Tab go to the shell (completion), so the terminal would trap a keyboard user.
// Ctrl+Shift+L leaves it: the focus moves to the next control of the page in the Tab order
// (when the terminal is the last, the first control of the page's main part: the tabs, or the
// status bar), as Tab would from anywhere else; Shift+Tab then goes back. In a tab of
// another terminal page (a frame), that is the next control of the page around it. The key is
// announced in the terminal's description (#terminal-keys, aria-describedby) and in
// docs/terminal.md. Ctrl+Shift+L would send the shell what Ctrl+L sends (clear the screen),
// which Ctrl+L still does.

const FOCUSABLE =
  'a[href], button:not([disabled]), input:not([disabled]):not([type="hidden"]), ' +
  'select:not([disabled]), textarea:not([disabled]), iframe, [tabindex]';

/** The controls of `doc` that Tab stops at, in document order (those shown only). */
function tabStops(doc) {
  return Array.from(doc.querySelectorAll(FOCUSABLE)).filter((el) => {
    if (el.tabIndex < 0 || el.closest('[inert], dialog:not([open])')) return false;
    if (el.getClientRects().length === 0) return false;
    return doc.defaultView.getComputedStyle(el).visibility !== 'hidden';
  });
}

/** Moves the focus from the terminal to the next control (see above). */
function leaveTerminal() {
  let from = termHost;
  let doc = document;
  try {
    if (embedded && window.frameElement) {
      from = window.frameElement;
      doc = window.parent.document;
    }
  } catch {
    // Not allowed to reach the page around: the next control of this one.
  }
  const stops = tabStops(doc).filter((el) => el !== from && !from.contains(el));
  // The terminal is usually the last thing on the page: then the first control of the page's
  // main part (the tabs, else the status bar), not the top bar.
  const main = doc.querySelector('main');
  const next =
    stops.find((el) => from.compareDocumentPosition(el) & Node.DOCUMENT_POSITION_FOLLOWING) ??
    stops.find((el) => main?.contains(el)) ??
    stops[0];
  if (!next) return;
  if (doc !== document) doc.defaultView.focus();
  next.focus();
}

// --- As one tab of the page (tabs.js) ------------------------------------------------------

/** Lets go of the session here (its tab is closed): the shell keeps running. */
function detach() {
  detachedHere = true;
  clearTimeout(retryTimer);
  const ws = socket;
  socket = null;
  ws?.close(1000, 'tab closed');
  guardUnload(false);
  setState('detached');
}

/** What the tab strip may ask of this session. */
const session = {
  id: sessionId,
  label: nodeLabel,
  /** Hides the tab (it keeps receiving and acknowledging) or shows it, fitted again. */
  setHidden(hidden) {
    tabHidden = hidden;
    if (!hidden) scheduleFit();
  },
  focus: () => term.focus(),
  detach,
  state: () => connState.dataset.state,
  /** The session output offset drawn here (null before the first sync). */
  drawn: () => offset,
};
window.portholeSession = session;
if (!embedded && !observing && !joinMode) initTabs(session);

// --- Sharing (the owner's Share dialog: POST/GET/DELETE /api/v1/sessions/{id}/participants) ---

const shareDialog = document.getElementById('share-dialog');
const shareOpen = document.getElementById('share-open');
const participantsPath = `/api/v1/sessions/${encodeURIComponent(sessionId)}/participants`;

/** Fills the dialog's list of invited people, each with a Revoke button. */
function showParticipants(list) {
  const ul = document.getElementById('share-list');
  ul.replaceChildren();
  for (const p of list) {
    const li = document.createElement('li');
    li.dataset.user = p.user;
    li.dataset.mode = p.mode;
    const label = document.createElement('span');
    label.textContent = `${p.user} — ${p.mode === 'write' ? 'types along' : 'watches'}`;
    const revoke = document.createElement('button');
    revoke.type = 'button';
    revoke.className = 'small danger revoke';
    revoke.textContent = 'Revoke';
    revoke.setAttribute('aria-label', `Revoke ${p.user}`);
    revoke.addEventListener('click', () => revokeParticipant(p.user, revoke));
    li.append(label, ' ', revoke);
    ul.append(li);
  }
  document.getElementById('share-empty').hidden = list.length > 0;
}

async function loadParticipants() {
  const result = await api('GET', participantsPath);
  if (result.status === 401) return toSignIn();
  if (result.ok) showParticipants(result.data.participants ?? []);
}

function shareProblem(text) {
  const box = document.getElementById('share-error');
  const input = document.getElementById('share-user');
  showError(box, text);
  if (text) input.setAttribute('aria-invalid', 'true');
  else input.removeAttribute('aria-invalid');
}

async function inviteParticipant() {
  const input = document.getElementById('share-user');
  const user = input.value.trim();
  if (!user) {
    shareProblem('Type the user name of the person to invite.');
    input.focus();
    return;
  }
  const mode = document.getElementById('share-mode').value;
  const button = document.getElementById('share-invite');
  button.disabled = true;
  const result = await api('POST', participantsPath, { user, mode });
  button.disabled = false;
  if (result.status === 401) return toSignIn();
  if (!result.ok) {
    shareProblem(errorMessage(result, 'Inviting failed.'));
    input.focus();
    return;
  }
  shareProblem('');
  input.value = '';
  await loadParticipants();
  input.focus();
}

async function revokeParticipant(user, button) {
  button.disabled = true;
  const result = await api('DELETE', `${participantsPath}/${encodeURIComponent(user)}`);
  if (result.status === 401) return toSignIn();
  if (!result.ok && result.status !== 404) {
    button.disabled = false;
    shareProblem(errorMessage(result, 'Revoking failed.'));
    return;
  }
  shareProblem('');
  await loadParticipants();
  document.getElementById('share-user').focus();
}

if (shareDialog && shareOpen) {
  document.getElementById('share-link').href = location.origin + location.pathname;
  document.getElementById('share-link').textContent = location.origin + location.pathname;
  shareOpen.addEventListener('click', async () => {
    shareProblem('');
    shareDialog.showModal();
    document.getElementById('share-user').focus();
    await loadParticipants();
  });
  document.getElementById('share-close').addEventListener('click', () => shareDialog.close());
  shareDialog.addEventListener('close', () => term.focus());
  document.getElementById('share-form').addEventListener('submit', (event) => {
    event.preventDefault();
    inviteParticipant();
  });
}

// --- Start -----------------------------------------------------------------------------------

loadSettings();

if (data.live !== 'true') {
  sessionEnded(data.endReason || `the session is ${data.state}`, endedAt);
} else if (observing || joinMode) {
  connect();
} else if (data.canAttach !== 'true') {
  setState('not-attached', 'not attached');
  showBanner('info', 'Only the person who opened this session can attach to it.');
} else {
  connect();
}
