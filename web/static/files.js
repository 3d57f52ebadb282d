// The terminal page's Files control: upload a file to the session's node (the Upload button, or
// a file dropped on the terminal) and download one by its path, through the gateway's
// POST/GET /api/v1/sessions/{id}/files?path=… (docs/terminal.md, "File transfer").
//
// Shown only to the session's owner while it runs, and only the ways the policy allows
// (data-file-transfer: none, download, upload or both; the role's `file_transfer`). Uploads go
// through XMLHttpRequest for its upload progress; downloads through fetch, read as it arrives
// (the bar and the words show the bytes received of the length the gateway gives), so that an
// error answer is shown as words rather than saved as a file.
import { csrfToken, errorMessage } from './common.js';

const root = document.getElementById('session');
const data = root.dataset;
const rule = data.fileTransfer || 'none';
const mayUpload = rule === 'upload' || rule === 'both';
const mayDownload = rule === 'download' || rule === 'both';
const usable =
  data.mode !== 'observe' && data.live === 'true' && data.canAttach === 'true' && (mayUpload || mayDownload);
/**
 * The node's platform when the gateway knows it. File transfer works on Linux nodes only: on
 * another, or one whose platform is not known (the gateway refuses both), the Files panel says
 * so instead of offering what the gateway would refuse.
 */
const platform = data.nodePlatform || '';
const unsupported = platform !== 'Linux';
const nodeIs = platform === '' ? 'a node whose platform is not known' : `a ${platform} node`;

const openButton = document.getElementById('files-open');
const panel = document.getElementById('files-panel');
const uploadPart = document.getElementById('files-upload');
const dirInput = document.getElementById('files-dir');
const fileInput = document.getElementById('files-input');
const chooseButton = document.getElementById('files-choose');
const downloadForm = document.getElementById('files-download');
const pathInput = document.getElementById('files-path');
const progress = document.getElementById('files-progress');
const status = document.getElementById('files-status');
const error = document.getElementById('files-error');
const closeButton = document.getElementById('files-close');
const termHost = document.getElementById('terminal');

const url = (path) => `/api/v1/sessions/${encodeURIComponent(data.sessionId)}/files?path=${encodeURIComponent(path)}`;

function toggle(open = panel.hidden) {
  panel.hidden = !open;
  openButton.setAttribute('aria-expanded', String(open));
  if (open) (mayUpload ? chooseButton : pathInput).focus();
}

function say(text) {
  status.textContent = text;
  error.hidden = true;
  error.textContent = '';
}

function fail(text) {
  error.textContent = text;
  error.hidden = false;
  status.textContent = '';
  progress.hidden = true;
  panel.dataset.busy = 'false';
}

function size(n) {
  if (n < 1024) return `${n} bytes`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/** The destination of `name` in the folder field's folder. */
function destination(name) {
  const dir = dirInput.value.trim() || '/tmp';
  return `${dir.replace(/\/+$/, '')}/${name}`;
}

/** Uploads `file` to `path`; resolves once answered (shown in the panel). */
function upload(file, path) {
  return new Promise((resolve) => {
    toggle(true);
    panel.dataset.busy = 'true';
    progress.hidden = false;
    progress.removeAttribute('value');
    say(`Uploading ${file.name} to ${path}…`);
    const xhr = new XMLHttpRequest();
    xhr.open('POST', url(path));
    xhr.setRequestHeader('X-CSRF-Token', csrfToken());
    xhr.setRequestHeader('Content-Type', 'application/octet-stream');
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.upload.addEventListener('progress', (event) => {
      if (!event.lengthComputable) return;
      progress.max = event.total;
      progress.value = event.loaded;
      say(`Uploading ${file.name} to ${path}: ${size(event.loaded)} of ${size(event.total)}…`);
    });
    xhr.upload.addEventListener('load', () => {
      progress.removeAttribute('value');
      say(`Uploading ${file.name} to ${path}: sent, the node is checking it…`);
    });
    xhr.addEventListener('load', () => {
      let answer = null;
      try {
        answer = JSON.parse(xhr.responseText);
      } catch {
        answer = null;
      }
      if (xhr.status === 201 && answer) {
        progress.max = 1;
        progress.value = 1;
        panel.dataset.busy = 'false';
        panel.dataset.done = answer.path;
        say(`Uploaded ${file.name} to ${answer.path} (${size(answer.bytes)}, SHA-256 ${answer.sha256.slice(0, 12)}…).`);
      } else {
        fail(errorMessage({ status: xhr.status, data: answer }, 'The upload failed.'));
      }
      resolve();
    });
    xhr.addEventListener('error', () => {
      fail('The upload failed: the gateway could not be reached.');
      resolve();
    });
    xhr.send(file);
  });
}

async function uploadAll(files) {
  for (const file of files) {
    await upload(file, destination(file.name));
    if (!error.hidden) break;
  }
}

async function download(path) {
  toggle(true);
  panel.dataset.busy = 'true';
  progress.hidden = false;
  progress.removeAttribute('value');
  say(`Downloading ${path}…`);
  let response;
  try {
    response = await fetch(url(path), { credentials: 'same-origin', cache: 'no-store' });
  } catch (e) {
    fail(`The download failed: the gateway could not be reached (${e.message}).`);
    return;
  }
  if (!response.ok) {
    let answer = null;
    try {
      answer = await response.json();
    } catch {
      answer = null;
    }
    fail(errorMessage({ status: response.status, data: answer }, 'The download failed.'));
    return;
  }
  // Read as it arrives, so that the bar and the words show how much came (of how much, when
  // the gateway says: it sends the length).
  const total = Number(response.headers.get('content-length')) || 0;
  if (total > 0) {
    progress.max = total;
    progress.value = 0;
  }
  const chunks = [];
  let received = 0;
  try {
    const reader = response.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      received += value.length;
      if (total > 0) progress.value = Math.min(received, total);
      say(`Downloading ${path}: ${size(received)}${total > 0 ? ` of ${size(total)}` : ''}…`);
    }
  } catch (e) {
    fail(`The download failed after ${size(received)}: the connection was lost (${e.message}).`);
    return;
  }
  const blob = new Blob(chunks);
  const link = document.createElement('a');
  link.href = URL.createObjectURL(blob);
  link.download = path.split('/').pop() || 'download';
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
  progress.max = 1;
  progress.value = 1;
  panel.dataset.busy = 'false';
  panel.dataset.done = path;
  const sha = response.headers.get('x-porthole-sha256') ?? '';
  say(`Downloaded ${path} (${size(blob.size)}${sha ? `, SHA-256 ${sha.slice(0, 12)}…` : ''}).`);
}

if (usable && unsupported) {
  openButton.hidden = false;
  openButton.title = `File transfer works on Linux nodes; this is ${nodeIs}`;
  const note = document.getElementById('files-platform');
  note.textContent = `File transfer works on Linux nodes only: ${data.nodeName || data.target} is ${nodeIs}.`;
  note.hidden = false;
  panel.dataset.platform = platform || 'unknown';
  // Files dropped on the terminal: the panel says why nothing is sent (rather than the browser
  // opening the file in place of the page).
  refuseDroppedFiles(() => {
    toggle(true);
    closeButton.focus();
  });
  openButton.addEventListener('click', () => {
    toggle();
    if (!panel.hidden) closeButton.focus();
  });
  closeable();
} else if (usable) {
  openButton.hidden = false;
  uploadPart.hidden = !mayUpload;
  downloadForm.hidden = !mayDownload;
  openButton.addEventListener('click', () => toggle());
  closeable();
  downloadForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const path = pathInput.value.trim();
    if (!path) {
      fail('Give the absolute path of the file on the node.');
      return;
    }
    download(path);
  });
  if (mayUpload) {
    chooseButton.addEventListener('click', () => fileInput.click());
    fileInput.addEventListener('change', () => {
      const files = Array.from(fileInput.files ?? []);
      fileInput.value = '';
      uploadAll(files);
    });
    // Files dropped on the terminal (text dropped there is pasted: terminal.js).
    termHost.addEventListener('dragover', (event) => {
      if (!carriesFiles(event)) return;
      event.preventDefault();
      event.dataTransfer.dropEffect = 'copy';
      root.classList.add('dropping-files');
    });
    termHost.addEventListener('dragleave', () => root.classList.remove('dropping-files'));
    termHost.addEventListener('drop', (event) => {
      if (!carriesFiles(event)) return;
      event.preventDefault();
      event.stopPropagation();
      root.classList.remove('dropping-files');
      uploadAll(Array.from(event.dataTransfer.files));
    });
  } else {
    // Download only: a file dropped on the terminal opens the panel, which says why it is not
    // sent (rather than the browser opening the file in place of the page and its shell).
    refuseDroppedFiles(() => {
      toggle(true);
      fail('Your role may download files from this node but not upload them (file_transfer = download).');
    });
  }
} else {
  // No file transfer here (the role's file_transfer = none, an observer, an ended session): a
  // file dropped on the terminal is refused, never opened by the browser in place of the page.
  refuseDroppedFiles(() => {});
}

/** The panel closes by its Close button and by Escape, the focus going back to Files. */
function closeable() {
  const close = () => {
    toggle(false);
    openButton.focus();
  };
  closeButton.addEventListener('click', close);
  panel.addEventListener('keydown', (event) => {
    if (event.key === 'Escape') close();
  });
}

/** Whether a drag carries files (text dropped on the terminal is pasted: terminal.js). */
function carriesFiles(event) {
  return Array.from(event.dataTransfer?.types ?? []).includes('Files');
}

/** Files dragged over or dropped on the terminal are not taken, and `why` is called on a drop. */
function refuseDroppedFiles(why) {
  termHost.addEventListener('dragover', (event) => {
    if (!carriesFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = 'none';
  });
  termHost.addEventListener('drop', (event) => {
    if (!carriesFiles(event)) return;
    event.preventDefault();
    event.stopPropagation();
    why();
  });
}
