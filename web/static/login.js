// The sign-in page: posts the form as JSON to the API, then goes where `next` says.
import { api, errorMessage, showError } from './common.js';

const form = document.getElementById('login-form');
const error = document.getElementById('login-error');
const submit = document.getElementById('login-submit');

/** Only a path on this gateway (the server checked it too). */
function nextPath() {
  const next = form.dataset.next || '/targets';
  return next.startsWith('/') && !next.startsWith('//') && !next.includes('\\') ? next : '/targets';
}

// With single sign-on only (auth.local = false, no break-glass names) there is no form.
form?.addEventListener('submit', async (event) => {
  event.preventDefault();
  const username = form.elements.username.value.trim();
  const password = form.elements.password.value;
  if (!username || !password) {
    showError(error, 'Enter your user name and password.');
    (username ? form.elements.password : form.elements.username).focus();
    return;
  }
  showError(error, '');
  submit.disabled = true;
  submit.textContent = 'Signing in…';
  const result = await api('POST', '/api/v1/auth/login', { username, password });
  if (result.ok) {
    location.assign(nextPath());
    return;
  }
  submit.disabled = false;
  submit.textContent = 'Sign in';
  showError(error, errorMessage(result, 'Signing in failed.'));
  form.elements.password.select();
});

// The form works only with this script (it sends JSON); enable it now.
if (submit) submit.disabled = false;
