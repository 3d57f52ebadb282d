// The bytes of the terminal keys that a phone's keyboard lacks (the on-screen key bar of
// terminal.js), and of Ctrl held with a key: pure functions, tested in
// tests/browser_clipboard.rs.

/**
 * The bytes of Ctrl plus `ch` (a key typed after the key bar's sticky Ctrl), or null when Ctrl
 * changes nothing: letters and @ [ \ ] ^ _ give their control code, space NUL, ? DEL.
 */
export function ctrlOf(ch) {
  if (typeof ch !== 'string' || ch.length !== 1) return null;
  if (ch === ' ') return '\x00';
  if (ch === '?') return '\x7f';
  const code = ch.toUpperCase().charCodeAt(0);
  if (code >= 0x40 && code <= 0x5f) return String.fromCharCode(code & 0x1f);
  return null;
}

/** The final letter of each arrow's sequence. */
const ARROWS = { up: 'A', down: 'B', right: 'C', left: 'D' };

/**
 * What a key of the key bar sends: `esc`, `tab`, an arrow (`up`, `down`, `left`, `right`) or a
 * single character. `ctrl`: the sticky Ctrl is on; `appCursor`: the program asked for
 * application cursor keys (DECCKM), which makes an arrow ESC O A rather than ESC [ A.
 */
export function keyBytes(key, { ctrl = false, appCursor = false } = {}) {
  if (key === 'esc') return '\x1b';
  if (key === 'tab') return '\t';
  if (key in ARROWS) {
    if (ctrl) return `\x1b[1;5${ARROWS[key]}`;
    return (appCursor ? '\x1bO' : '\x1b[') + ARROWS[key];
  }
  if (ctrl) return ctrlOf(key) ?? key;
  return key;
}
