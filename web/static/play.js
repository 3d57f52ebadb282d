// The playback page: asciinema-player (web/dist/vendor/asciinema-player, from npm) playing the
// session's asciicast recording from the API. `?t=SECONDS` (rendered into data-start-at by the
// server) starts at that moment, paused there; the speed menu recreates the player at the
// current time with the new speed. The player has its own seek bar and keys.
import { showError } from './common.js';
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
