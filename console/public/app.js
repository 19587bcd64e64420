// The console's pages: sessions (filtered, paged), a session's timeline and terminal replay,
// and pending approvals, refreshed every two seconds without a reload.
import { player } from './player.js';

const main = document.getElementById('main');
const html = (value) => String(value ?? '').replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
// The signed-in console's anti-forgery token (from whoami): every decision carries it.
const signedIn = fetch('/api/whoami').then((response) => (response.ok ? response.json() : {}));

async function api(path, options = {}) {
  const { csrfToken } = await signedIn;
  const response = await fetch(`/api/${path}`, {
    ...options,
    headers: {
      'content-type': 'application/json',
      'x-airlock-console': '1',
      ...(csrfToken && { 'x-airlock-csrf': csrfToken }),
    },
  });
  // A session that ended (expired, signed out elsewhere) signs in again.
  if (response.status === 401) location.assign('/');
  const body = await response.json();
  if (!response.ok) throw new Error(body.message ?? `status ${response.status}`);
  return body;
}

async function sessionsPage(params) {
  const query = new URLSearchParams(params);
  const page = await api(`sessions?${query}`);
  const field = (name, label) =>
    `<input name="${name}" placeholder="${label}" value="${html(params.get(name))}">`;
  main.innerHTML = `<h1>Sessions</h1>
    <form class="filters">${field('namespace', 'namespace')}${field('connection', 'connection')}${field('identity', 'identity')}
      <select name="outcome"><option value="">any outcome</option>${['blocked', 'masked', 'clean']
        .map((o) => `<option ${params.get('outcome') === o ? 'selected' : ''}>${o}</option>`)
        .join('')}</select>${field('since', 'since (ISO time)')}<button>Filter</button></form>
    <table id="sessions"><tr><th>Session</th><th>Namespace</th><th>Connection</th><th>Protocol</th><th>Identity</th><th>Started</th><th>Requests</th><th>Blocked</th><th>Masked</th></tr>
    ${page.sessions
      .map(
        (
          s,
        ) => `<tr><td><a href="#/sessions/${encodeURIComponent(s.id)}?namespace=${encodeURIComponent(s.namespace)}">${html(s.id.slice(0, 8))}</a></td>
        <td>${html(s.namespace)}</td><td>${html(s.connection)}</td><td>${html(s.protocol)}</td><td>${html(s.identity)}${s.user ? ` for ${html(s.user)}` : ''}</td>
        <td>${html(s.started)}</td><td>${s.requests}</td><td class="${s.blocked ? 'blocked' : ''}">${s.blocked}</td><td class="${s.masked ? 'masked' : ''}">${s.masked}</td></tr>`,
      )
      .join('')}</table>
    ${page.next !== undefined ? `<p><a id="older" href="#/sessions?${new URLSearchParams({ ...Object.fromEntries(query), before: page.next })}">Older sessions</a></p>` : ''}`;
  main.querySelector('form').addEventListener('submit', (event) => {
    event.preventDefault();
    const filters = new URLSearchParams(new FormData(event.target));
    for (const [k, v] of [...filters]) if (!v) filters.delete(k);
    location.hash = `#/sessions?${filters}`;
  });
}

async function sessionPage(id, namespace) {
  const { summary, events } = await api(
    `sessions/${encodeURIComponent(id)}${namespace ? `?namespace=${encodeURIComponent(namespace)}` : ''}`,
  );
  const requests = events.filter((e) => e.type === 'request');
  const frames = events
    .filter((e) => e.type === 'data')
    .map((e) => [e.at, e.stream === 'input' ? 'i' : 'o', e.data]);
  main.innerHTML = `<h1>Session ${html(summary.id)}</h1>
    <p>${html(summary.connection)} (${html(summary.protocol)}) in ${html(summary.namespace)} as ${html(summary.identity)}${summary.user ? ` acting for ${html(summary.user)}` : ''}, from ${html(summary.started)} to ${html(summary.ended ?? 'now')}</p>
    <h2>Timeline</h2>
    <table id="timeline"><tr><th>Time</th><th>Statement, command or request</th><th>Decision</th><th>Rule</th><th>Masked</th><th>Approval</th></tr>
    ${requests
      .map(
        (e) => `<tr><td>${html(e.time.slice(11, 23))}</td><td class="text">${html(e.text)}</td>
        <td class="${html(e.outcome)}">${html(e.outcome)}${e.reasons?.length ? `<br>${html(e.reasons.join('; '))}` : ''}</td>
        <td>${html(e.policy ? `${e.policy}/${e.rule ?? ''}` : '')}</td>
        <td>${html(
          Object.entries(e.masked ?? {})
            .map(([k, n]) => `${k}: ${n}`)
            .join(', '),
        )}</td>
        <td>${html(e.approval ? `${e.approval.request}${e.approval.decidedBy ? ` by ${e.approval.decidedBy}` : ''}` : '')}</td></tr>`,
      )
      .join('')}</table>
    ${frames.length ? '<h2>Terminal</h2><div id="replay"></div>' : ''}`;
  if (frames.length) player(document.getElementById('replay'), frames);
}

async function approvalsPage() {
  const render = async () => {
    const pending = await api('approvals');
    document.getElementById('pending-count').textContent = pending.length ? `(${pending.length})` : '';
    if (!location.hash.startsWith('#/approvals')) return;
    const list = document.getElementById('approvals');
    if (!list) return;
    const shown = new Set([...list.querySelectorAll('tr[data-id]')].map((row) => row.dataset.id));
    const ids = new Set(pending.map((p) => p.id));
    for (const row of list.querySelectorAll('tr[data-id]')) if (!ids.has(row.dataset.id)) row.remove();
    for (const p of pending) {
      if (shown.has(p.id)) continue;
      const row = document.createElement('tr');
      row.dataset.id = p.id;
      row.innerHTML = `<td>${html(p.id)}</td><td>${html(p.requester ?? (p.request.endUser ? `for ${p.request.endUser.user}` : ''))}</td><td>${html(p.request.connection)}</td><td class="text">${html(p.request.text)}</td>
        <td>${html(`${p.request.policy}/${p.request.rule}`)}</td><td>${html(p.expiresAt)}</td>
        <td><input placeholder="reason" data-reason> <button data-decide="approve">Approve</button> <button data-decide="deny">Deny</button> <span class="message"></span></td>`;
      for (const button of row.querySelectorAll('button'))
        button.addEventListener('click', async () => {
          const reason = row.querySelector('[data-reason]').value;
          try {
            await api(`approvals/${encodeURIComponent(p.id)}/${button.dataset.decide}`, {
              method: 'POST',
              body: JSON.stringify(reason ? { reason } : {}),
            });
            row.remove();
          } catch (error) {
            row.querySelector('.message').textContent = error.message;
          }
        });
      list.append(row);
    }
  };
  main.innerHTML = `<h1>Pending approvals</h1>
    <table id="approvals"><tr><th>Request</th><th>Requester</th><th>Connection</th><th>Statement, command or request</th><th>Rule</th><th>Expires</th><th>Decision</th></tr></table>`;
  await render();
  return render;
}

let refresh;
async function route() {
  const [path, query] = location.hash.slice(1).split('?');
  refresh = undefined;
  try {
    if (path?.startsWith('/sessions/'))
      await sessionPage(
        decodeURIComponent(path.slice('/sessions/'.length)),
        new URLSearchParams(query ?? '').get('namespace'),
      );
    else if (path === '/approvals') refresh = await approvalsPage();
    else await sessionsPage(new URLSearchParams(query ?? ''));
  } catch (error) {
    main.innerHTML = `<p class="message">${html(error.message)}</p>`;
  }
}

signedIn.then(({ user, signOut, csrfToken }) => {
  document.getElementById('user').textContent = user ?? '';
  if (!signOut) return;
  const button = document.getElementById('sign-out');
  button.hidden = false;
  button.addEventListener('click', async () => {
    const response = await fetch(signOut, { method: 'POST', headers: { 'x-airlock-csrf': csrfToken } });
    const { location: next } = await response.json();
    location.assign(next ?? '/');
  });
});
addEventListener('hashchange', route);
route();
setInterval(async () => {
  try {
    if (refresh) await refresh();
    else {
      const pending = await api('approvals');
      document.getElementById('pending-count').textContent = pending.length ? `(${pending.length})` : '';
    }
  } catch {}
}, 2000);
