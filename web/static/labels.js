// The labels of a recording (play page): tags and a note its owner or an auditor keeps, saved
// with PUT /api/v1/sessions/{id}/labels; the page then shows them as stored (lower case,
// sorted, each tag once).
import { api, errorMessage, showError } from './common.js';

const section = document.getElementById('labels');
const form = document.getElementById('labels-form');

/** The tags typed: split at spaces and commas, empty pieces dropped. */
export function splitTags(text) {
  return text.split(/[\s,]+/).filter((t) => t.length > 0);
}

/** Shows `labels` (the API's answer) in the page. */
function show(labels) {
  const list = document.getElementById('labels-tags');
  list.replaceChildren(...labels.tags.map((tag) => {
    const item = document.createElement('li');
    const link = document.createElement('a');
    link.className = 'tag';
    link.href = `/search?q=${encodeURIComponent(tag)}`;
    link.textContent = tag;
    item.append(link);
    return item;
  }));
  const note = document.getElementById('labels-note');
  note.textContent = labels.note;
  note.hidden = labels.note === '';
  const by = document.getElementById('labels-by');
  by.textContent = labels.updated_by ? `Last changed by ${labels.updated_by}` : '';
  by.hidden = !labels.updated_by;
}

if (section && form) {
  const input = document.getElementById('labels-input');
  const noteInput = document.getElementById('labels-note-input');
  const error = document.getElementById('labels-error');
  const saved = document.getElementById('labels-saved');
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    showError(error, '');
    saved.textContent = '';
    input.removeAttribute('aria-invalid');
    noteInput.removeAttribute('aria-invalid');
    const button = form.querySelector('button[type="submit"]');
    button.disabled = true;
    const result = await api('PUT', `/api/v1/sessions/${encodeURIComponent(section.dataset.sessionId)}/labels`, {
      tags: splitTags(input.value),
      note: noteInput.value,
    });
    button.disabled = false;
    if (!result.ok) {
      const message = errorMessage(result, 'The labels were not saved.');
      showError(error, message);
      (message.startsWith('Note') ? noteInput : input).setAttribute('aria-invalid', 'true');
      return;
    }
    show(result.data);
    input.value = result.data.tags.join(' ');
    noteInput.value = result.data.note;
    saved.textContent = 'Saved.';
  });
}
