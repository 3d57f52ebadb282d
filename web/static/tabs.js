// Tabs on the terminal page: several sessions in one page, each its own tab.
//
// The page's own session (the one in its URL) is the first tab, drawn by terminal.js in this
// document. "+" asks for a node and a reason (the same prompt as the targets page: POST
// /api/v1/sessions), and the new session opens in a tab of its own: a frame showing that
// session's terminal page (`/sessions/ID?embed=1`), so each tab has its own xterm.js, socket,
// flow control, screen, status bar, banner, find bar and paste dialog, exactly as a page of its
// own would, and nothing is shared between two tabs but the page around them.
//
// Hidden tabs stay laid out at the size of the shown one (visibility: hidden, not display:
// none), keep receiving output, drawing it into their (unseen) screen and acknowledging it, so
// a busy hidden tab never stalls; they are not fitted while hidden (terminal.js's
// `setHidden`), and a tab shown again is fitted to the space it has then.
//
// Closing a tab asks: detach (the shell keeps running; Sessions lists it) or end the session.
// The URL names the first open tab's session and the others (`/sessions/ID?tabs=ID2,ID3`), so a
// reload or a copied link opens the same tabs; `/sessions/ID` alone is one session, as before.
import { api, errorMessage, showError, toSignIn } from './common.js';
import { askReason } from './shell-prompt.js';

/** Most tabs in one page (each is a live socket and a terminal). */
const MAX_TABS = 8;

/** The session ids of `?tabs=` (ids of the gateway's form only). */
function tabsOfUrl() {
  const value = new URL(location.href).searchParams.get('tabs') ?? '';
  return value
    .split(',')
    .map((id) => id.trim())
    .filter((id) => /^[A-Za-z0-9_-]{1,100}$/.test(id));
}

/** Sets up the tab strip around `first`, terminal.js's session of this document. */
export function initTabs(first) {
  const strip = document.getElementById('tabs');
  const newButton = document.getElementById('tab-new');
  const mainPanel = document.getElementById('panel-main');
  if (!strip || !newButton || !mainPanel) return;
  const root = document.getElementById('session');
  const firstTitle = document.title;
  const panels = mainPanel.parentElement;

  /** The open tabs, in order: {id, label, panel, button, close, frame?}. */
  const tabs = [];
  let shown = null;

  const sessionOf = (tab) => {
    if (!tab.frame) return first;
    try {
      return tab.frame.contentWindow?.portholeSession;
    } catch {
      return undefined;
    }
  };

  /** The address of the page's tabs (history.replaceState: no new history entry). */
  function syncUrl() {
    if (tabs.length === 0) return;
    const url = new URL(location.href);
    url.pathname = `/sessions/${encodeURIComponent(tabs[0].id)}`;
    const rest = tabs.slice(1).map((t) => t.id);
    if (rest.length) url.searchParams.set('tabs', rest.join(','));
    else url.searchParams.delete('tabs');
    if (url.href !== location.href) history.replaceState(null, '', url);
    root.dataset.tabs = String(tabs.length);
  }

  function makeTab(id, label, panel, frame) {
    const item = document.createElement('div');
    item.className = 'tab';
    item.setAttribute('role', 'presentation');
    item.dataset.session = id;
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'tab-button';
    button.id = `tab-${id}`;
    button.setAttribute('role', 'tab');
    button.setAttribute('aria-controls', panel.id);
    button.dataset.session = id;
    const name = document.createElement('span');
    name.className = 'tab-label';
    name.textContent = label;
    const state = document.createElement('span');
    state.className = 'tab-state';
    state.dataset.state = 'connecting';
    state.textContent = 'connecting';
    button.append(name, ' ', state);
    const close = document.createElement('button');
    close.type = 'button';
    close.className = 'tab-close small ghost';
    close.textContent = '×';
    close.setAttribute('aria-label', `Close the tab of ${label}`);
    close.title = 'Close this tab (detach or end the session); from the keyboard: Delete on the tab';
    // For the pointer only: out of the Tab order and of the accessibility tree (a tab list holds
    // tabs only). From the keyboard, Delete on the tab closes it, which the tab says.
    close.tabIndex = -1;
    close.setAttribute('aria-hidden', 'true');
    button.setAttribute('aria-keyshortcuts', 'Delete');
    button.title = `${label}: Delete closes this tab`;
    item.append(button, close);
    strip.append(item);
    panel.setAttribute('aria-labelledby', button.id);
    const tab = { id, label, panel, button, close, frame, item, state, name };
    button.addEventListener('click', () => show(tab, true));
    close.addEventListener('click', () => askClose(tab));
    tabs.push(tab);
    return tab;
  }

  /** Shows `tab`, hides the others (they keep running); `focus` puts the keys in its terminal. */
  function show(tab, focus = false) {
    shown = tab;
    for (const t of tabs) {
      const hidden = t !== tab;
      t.panel.classList.toggle('tab-hidden', hidden);
      t.panel.setAttribute('aria-hidden', String(hidden));
      if (t.frame) t.frame.tabIndex = hidden ? -1 : 0;
      t.button.setAttribute('aria-selected', String(!hidden));
      t.button.tabIndex = hidden ? -1 : 0;
      sessionOf(t)?.setHidden(hidden);
    }
    root.dataset.activeTab = tab.id;
    document.title = (tab.frame ? tab.frame.contentDocument?.title : firstTitle) || document.title;
    if (focus) {
      if (tab.frame) tab.frame.focus();
      sessionOf(tab)?.focus();
    }
  }

  /** Opens session `id` in a new tab (a frame with its terminal page). */
  function openTab(id, label, focus) {
    const frame = document.createElement('iframe');
    frame.className = 'tab-panel tab-frame';
    frame.id = `panel-${id}`;
    frame.setAttribute('role', 'tabpanel');
    frame.title = `Terminal: ${label}`;
    frame.src = `/sessions/${encodeURIComponent(id)}?embed=1`;
    frame.classList.add('tab-hidden');
    const tab = makeTab(id, label, frame, frame);
    frame.addEventListener('load', () => {
      // The page in the frame took its hidden state from isHidden(); say it again in case.
      const session = sessionOf(tab);
      session?.setHidden(shown !== tab);
      if (session?.label) {
        tab.label = session.label;
        tab.name.textContent = session.label;
        tab.close.setAttribute('aria-label', `Close the tab of ${session.label}`);
        tab.button.title = `${session.label}: Delete closes this tab`;
        frame.title = `Terminal: ${session.label}`;
      }
      if (shown === tab && focus) sessionOf(tab)?.focus();
    });
    panels.append(frame);
    syncUrl();
    if (focus) show(tab, false);
    return tab;
  }

  async function closeTab(tab, end) {
    if (end) {
      const result = await api('DELETE', `/api/v1/sessions/${encodeURIComponent(tab.id)}`);
      if (result.status === 401) return toSignIn();
      if (!result.ok && result.data?.error?.code !== 'session_ended') {
        alert(errorMessage(result, 'Ending the session failed.'));
        return;
      }
    }
    sessionOf(tab)?.detach();
    const at = tabs.indexOf(tab);
    tabs.splice(at, 1);
    tab.item.remove();
    if (tab.frame) tab.frame.remove();
    else tab.panel.classList.add('tab-closed');
    if (tabs.length === 0) {
      // Nothing left in the page: to the list of nodes.
      location.assign('/targets');
      return;
    }
    syncUrl();
    if (shown === tab) show(tabs[Math.min(at, tabs.length - 1)], true);
  }

  const closeDialog = document.getElementById('close-dialog');
  function askClose(tab) {
    const over = ['ended', 'detached'].includes(sessionOf(tab)?.state());
    if (over) {
      closeTab(tab, false);
      return;
    }
    document.getElementById('close-node').textContent = tab.label;
    closeDialog.returnValue = 'cancel';
    closeDialog.onclose = () => {
      const choice = closeDialog.returnValue;
      if (choice === 'detach') closeTab(tab, false);
      else if (choice === 'end') closeTab(tab, true);
      else tab.button.focus();
    };
    closeDialog.showModal();
    document.getElementById('close-detach').focus();
  }

  // Arrow keys, Home and End move between tabs (the tab list's own keys); Delete closes one.
  strip.addEventListener('keydown', (event) => {
    const at = tabs.findIndex((t) => t.button === document.activeElement);
    if (at < 0) return;
    if (event.key === 'Delete') {
      event.preventDefault();
      askClose(tabs[at]);
      return;
    }
    const to = {
      ArrowRight: (at + 1) % tabs.length,
      ArrowLeft: (at - 1 + tabs.length) % tabs.length,
      Home: 0,
      End: tabs.length - 1,
    }[event.key];
    if (to === undefined) return;
    event.preventDefault();
    show(tabs[to], false);
    tabs[to].button.focus();
  });

  // "+": which node, then the reason prompt; the new session opens in a tab of its own.
  const tabDialog = document.getElementById('tab-dialog');
  const tabTarget = document.getElementById('tab-target');
  const tabError = document.getElementById('tab-error');
  let targets = [];
  newButton.addEventListener('click', async () => {
    showError(tabError, '');
    if (tabs.length >= MAX_TABS) {
      showError(tabError, `At most ${MAX_TABS} tabs in one page: close one first.`);
      tabDialog.showModal();
      return;
    }
    const result = await api('GET', '/api/v1/targets');
    if (result.status === 401) return toSignIn();
    if (!result.ok) {
      showError(tabError, errorMessage(result, 'The list of nodes could not be loaded.'));
      tabDialog.showModal();
      return;
    }
    targets = result.data.targets ?? [];
    tabTarget.replaceChildren(
      ...targets.map((t) => {
        const option = document.createElement('option');
        option.value = t.id;
        const off = t.ping_status && t.ping_status !== 'Online' ? ` (${t.ping_status})` : '';
        option.textContent = `${t.name || t.id} · ${t.id}${off}`;
        return option;
      }),
    );
    // The node of the shown tab first: a second shell there is the usual wish.
    const current = document.getElementById('session').dataset.target;
    if (targets.some((t) => t.id === current)) tabTarget.value = current;
    tabDialog.showModal();
    tabTarget.focus();
  });
  document.getElementById('tab-cancel').addEventListener('click', () => tabDialog.close());
  document.getElementById('tab-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const target = targets.find((t) => t.id === tabTarget.value);
    if (!target) {
      showError(tabError, 'Choose a node.');
      return;
    }
    tabDialog.close();
    askReason(target, {
      opened: (session) => openTab(session.id, target.name || target.id, true),
      approvalRequired: () => {
        showError(tabError, `${target.name || target.id} needs an approver's yes first: ask for access on the Targets page.`);
        tabDialog.showModal();
      },
    });
  });

  // What the sessions' pages say of their connection (terminal.js's setState), on their tabs.
  window.portholeTabs = {
    update(id, { state, label }) {
      const tab = tabs.find((t) => t.id === id);
      if (!tab) return;
      tab.state.dataset.state = state;
      tab.state.textContent = label ?? state;
    },
    /** Whether session `id`'s tab is hidden (asked by its page as it starts). */
    isHidden(id) {
      const tab = tabs.find((t) => t.id === id);
      return Boolean(tab && tab !== shown);
    },
  };

  const firstTab = makeTab(first.id, first.label, mainPanel, null);
  firstTab.state.dataset.state = first.state() ?? 'connecting';
  firstTab.state.textContent = firstTab.state.dataset.state;
  show(firstTab, false);
  // Tabs named in the URL (a reload, a shared link): opened behind the first.
  const seen = new Set([first.id]);
  for (const id of tabsOfUrl()) {
    if (seen.has(id) || tabs.length >= MAX_TABS) continue;
    seen.add(id);
    openTab(id, id, false);
  }
  syncUrl();
}
