// The playback page: asciinema-player (web/dist/vendor/asciinema-player, from npm) playing the
// session's asciicast recording from the API. `?t=SECONDS` (rendered into data-start-at by the
// server) starts at that moment, paused there; the speed menu recreates the player at the
// current time with the new speed. The player has its own seek bar and keys. With screen reader
// mode on in the person's settings (GET /api/v1/me/settings, the terminal page's setting), the
// page also shows what the session printed as plain text, which a screen reader reads line by
// line (the player draws a moving screen). The labels form is labels.js's.
import { api, showError } from './common.js';
import './labels.js';

const root = document.getElementById('playback');
const host = document.getElementById('player');
const speedMenu = document.getElementById('play-speed');
const error = document.getElementById('play-error');

let player = null;

/** Creates the player at `startAt` seconds, playing when `play` is set. */
function create(startAt, play) {
  if (player) player.dispose();
  host.replaceChildren();
  player = window.AsciinemaPlayer.create(root.dataset.recordingUrl, host, {
    startAt,
    // Paused, the player shows its poster: the frame at the start time (NPT, in seconds).
    poster: `npt:${startAt}`,
    speed: Number(speedMenu.value) || 1,
    autoPlay: play,
    preload: true,
    fit: 'width',
    terminalFontFamily: '"DejaVu Sans Mono", "Cascadia Mono", Menlo, Consolas, "Liberation Mono", monospace',
  });
  // For tests and debugging from the console (no inline script on the page).
  window.portholePlayer = player;
}

if (!window.AsciinemaPlayer) {
  showError(error, 'The player did not load (run scripts/web-build).');
} else {
  const startAt = Math.max(0, Number(root.dataset.startAt) || 0);
  // Opened at a moment (a search result): show that moment at once; else wait for a click.
  create(startAt, false);
  speedMenu.addEventListener('change', async () => {
    const at = (await player.getCurrentTime()) || 0;
    create(at, true);
  });
}

// The server renders UTC; show local time, keeping UTC in the tooltip.
for (const time of document.querySelectorAll('time[datetime]')) {
  const at = new Date(time.dateTime);
  if (!Number.isNaN(at.getTime())) {
    time.title = time.textContent;
    time.textContent = at.toLocaleString(undefined, { dateStyle: 'short', timeStyle: 'medium' });
  }
}

/**
 * What a terminal would show of `output` as plain lines: escape sequences (CSI, OSC, DCS and
 * the two-byte ones) dropped, a carriage return or backspace overwriting the line, other
 * control characters dropped, runs of blank lines kept to one.
 */
export function plainText(output) {
  const stripped = output
    .replace(/\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)/g, '')
    .replace(/\x1b[P_^][^\x1b]*\x1b\\/g, '')
    .replace(/\x1b\[[0-?]*[ -/]*[@-~]/g, '')
    .replace(/\x1b[()*+][0-9A-Za-z]/g, '')
    .replace(/\x1b[ -~]/g, '');
  const lines = [];
  for (const raw of stripped.split('\n')) {
    const cells = [];
    let col = 0;
    for (const ch of raw) {
      if (ch === '\r') col = 0;
      else if (ch === '\b') col = Math.max(0, col - 1);
      else if (ch >= ' ' && ch !== '\x7f') cells[col++] = ch;
    }
    const line = Array.from(cells, (c) => c ?? ' ').join('').trimEnd();
    if (line || lines[lines.length - 1] !== '') lines.push(line);
  }
  return lines.join('\n').trim();
}

/** The output of an asciicast v2 recording (its "o" events), in order. */
function castOutput(text) {
  let out = '';
  for (const line of text.split('\n').slice(1)) {
    try {
      const event = JSON.parse(line);
      if (Array.isArray(event) && event[1] === 'o' && typeof event[2] === 'string') out += event[2];
    } catch {
      // A blank or cut-off last line.
    }
  }
  return out;
}

async function showTranscript() {
  const settings = await api('GET', '/api/v1/me/settings');
  if (!settings.ok || settings.data?.screen_reader !== true) return;
  const section = document.getElementById('transcript');
  const pre = document.getElementById('transcript-text');
  try {
    const response = await fetch(root.dataset.recordingUrl, { credentials: 'same-origin' });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    pre.textContent = plainText(castOutput(await response.text())) || '(The session printed nothing.)';
  } catch (e) {
    pre.textContent = `The recording could not be read (${e.message}).`;
  }
  section.hidden = false;
  // For tests: the transcript is in place.
  root.dataset.transcript = 'shown';
}

showTranscript();
