// Pasting into the terminal: pure functions (no DOM, no socket), so that they can be tested on
// their own (tests/browser_clipboard.rs imports this module in a page of the gateway).
//
// What a paste becomes, in order:
//   1. line breaks normalised to CR, as terminals do (xterm.js's prepareTextForTerminal):
//      CRLF and LF become CR, which the tty turns back into LF for a program in cooked mode;
//   2. the bracketed-paste markers removed from the text (an injection guard: a pasted
//      ESC [201~ would end the bracket early, and what follows would run as typed);
//   3. wrapped in ESC [200~ … ESC [201~ when the program turned bracketed paste on
//      (DECSET 2004), as xterm does;
//   4. encoded as UTF-8 and cut into pieces of at most a given number of bytes, never inside a
//      character (a surrogate pair is one four-byte character).

/** Starts a bracketed paste. */
export const PASTE_START = '\x1b[200~';
/** Ends a bracketed paste. */
export const PASTE_END = '\x1b[201~';

/** CRLF and LF become CR, as a terminal sends the Enter key. */
export function normalizeNewlines(text) {
  return text.replace(/\r?\n/g, '\r');
}

/**
 * The text without bracketed-paste markers. Repeated until none is left, because removing one
 * can join the pieces of another (`ESC [20` + `ESC [201~` + `1~`).
 */
export function stripPasteMarkers(text) {
  let out = text;
  for (;;) {
    const next = out.split(PASTE_END).join('').split(PASTE_START).join('');
    if (next === out) return out;
    out = next;
  }
}

/** The text as the terminal sends it: normalised, markers stripped, bracketed if asked. */
export function preparePaste(text, bracketed) {
  const clean = stripPasteMarkers(normalizeNewlines(text));
  return bracketed ? PASTE_START + clean + PASTE_END : clean;
}

/** Whether the paste holds a line break (it would run a command before one could read it). */
export function isMultiLine(text) {
  return /[\r\n]/.test(text);
}

/**
 * The first `count` lines of the paste (for the confirmation), and how many lines it has.
 * Line breaks of any kind count; a last empty line (a trailing break) is not counted.
 */
export function previewLines(text, count) {
  const lines = text.split(/\r\n|\r|\n/);
  if (lines.length > 1 && lines[lines.length - 1] === '') lines.pop();
  return { lines: lines.slice(0, count), total: lines.length };
}

/** Whether `byte` continues a UTF-8 character (10xxxxxx). */
function isContinuation(byte) {
  return (byte & 0xc0) === 0x80;
}

/**
 * `bytes` (UTF-8) cut into pieces of at most `limit` bytes, each ending at a character
 * boundary. `limit` must be at least 4 (the longest character).
 */
export function splitUtf8(bytes, limit) {
  if (!Number.isInteger(limit) || limit < 4) throw new RangeError('limit must be at least 4 bytes');
  const pieces = [];
  let start = 0;
  while (start < bytes.length) {
    let end = Math.min(start + limit, bytes.length);
    if (end < bytes.length) {
      // Back off to the first byte of the character that would be cut.
      while (end > start && isContinuation(bytes[end])) end -= 1;
    }
    pieces.push(bytes.subarray(start, end));
    start = end;
  }
  return pieces;
}

const encoder = new TextEncoder();

/** The paste as the pieces sent to the gateway: prepared, UTF-8, at most `limit` bytes each. */
export function pastePieces(text, { bracketed = false, limit }) {
  if (text === '') return [];
  return splitUtf8(encoder.encode(preparePaste(text, bracketed)), limit);
}
