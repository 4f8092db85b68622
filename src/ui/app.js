// The registry's web page: a small vanilla ES module over the JSON API (no framework, no build).
// Every piece of text reaches the page through textContent or setAttribute, never innerHTML, so
// names, labels and file contents are shown as text and never run. The token the user pastes is
// kept in sessionStorage (this tab only) and sent as Authorization: Bearer; it is never put in a
// URL or a cookie.

const TOKEN_KEY = 'model-registry.token';
const PREVIEW_MAX = 256 * 1024;
const main = document.getElementById('main');

// ---------- small helpers ----------

/** An element: h('td', { class: 'num', title: 'x', onclick: fn }, 'text', child, ...). */
function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = value;
    else if (key in el && typeof value !== 'string') el[key] = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function bytes(n) {
  if (typeof n !== 'number') return '';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

const when = (iso) => (iso ? iso.replace('T', ' ').replace(/\.\d+Z$|Z$/, ' UTC') : '');
const shortDigest = (hex) => (hex ? `${hex.slice(0, 12)}…` : '');
/** A model name in an API path (a `/` of a namespace stays a separator). */
const namePath = (name) =>
  name
    .split('/')
    .map((s) => encodeURIComponent(s).replace(/%40/g, '@'))
    .join('/');
const filePath = (p) => p.split('/').map(encodeURIComponent).join('/');

function token() {
  return sessionStorage.getItem(TOKEN_KEY) ?? '';
}
function authHeaders() {
  const t = token();
  return t ? { authorization: `Bearer ${t}` } : {};
}

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** The registry's own error, from a response body (JSON {error, message}) or its status. */
function apiError(status, text) {
  try {
    const body = JSON.parse(text);
    if (body && typeof body.message === 'string') return new ApiError(status, body.error ?? '', body.message);
  } catch {
    /* not JSON */
  }
  return new ApiError(status, '', text || `HTTP ${status}`);
}

async function api(path, { method = 'GET', body, headers = {} } = {}) {
  const init = { method, headers: { ...authHeaders(), ...headers } };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers['content-type'] = 'application/json';
  }
  const res = await fetch(path, init);
  const text = await res.text();
  if (!res.ok) throw apiError(res.status, text);
  return text ? JSON.parse(text) : undefined;
}

function describe(err) {
  if (err instanceof ApiError) return `${err.status}${err.code ? ` ${err.code}` : ''}: ${err.message}`;
  return String(err?.message ?? err);
}

function notice(kind, text) {
  return h('div', { class: `notice ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, text);
}

/** Shows the outcome of an action in `box` (an element), then runs `after` on success. */
async function act(box, label, fn, after) {
  box.replaceChildren(notice('ok', `${label}…`));
  try {
    await fn();
    box.replaceChildren(notice('ok', `${label}: done.`));
    if (after) await after();
  } catch (err) {
    box.replaceChildren(notice('error', `${label} failed: ${describe(err)}`));
  }
}

/** A link that downloads `href`; with a token, fetched with it (a link cannot carry a header). */
function download(href, filename, text = 'Download') {
  return h(
    'a',
    {
      href,
      download: filename,
      class: 'download',
      onclick: async (event) => {
        if (!token()) return;
        event.preventDefault();
        // Through the registry: a redirect (DOWNLOAD_REDIRECT) to the store would need CORS there.
        const res = await fetch(`${href}${href.includes('?') ? '&' : '?'}redirect=false`, { headers: authHeaders() });
        if (!res.ok) {
          alert(describe(apiError(res.status, await res.text())));
          return;
        }
        const url = URL.createObjectURL(await res.blob());
        h('a', { href: url, download: filename }).click();
        setTimeout(() => URL.revokeObjectURL(url), 60_000);
      },
    },
    text,
  );
}

function snippet(title, text) {
  const pre = h('pre', {}, h('code', { text }));
  return h(
    'div',
    { class: 'snippet' },
    h('div', { class: 'muted' }, title),
    h(
      'button',
      {
        type: 'button',
        onclick: async (event) => {
          try {
            await navigator.clipboard.writeText(text);
            event.target.textContent = 'Copied';
          } catch {
            getSelection().selectAllChildren(pre);
            event.target.textContent = 'Selected: press Ctrl+C';
          }
        },
      },
      'Copy',
    ),
    pre,
  );
}

function chips(record, cls, fmt) {
  return Object.entries(record ?? {})
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([k, v]) => h('span', { class: `chip ${cls}` }, fmt(k, v)));
}

/** `k=v k2=v2` (spaces or commas between) → { k: 'v', k2: 'v2' }. */
function parseLabels(text) {
  const labels = {};
  for (const pair of text.split(/[\s,]+/).filter(Boolean)) {
    const i = pair.indexOf('=');
    if (i <= 0) throw new Error(`label ${JSON.stringify(pair)} is not key=value`);
    labels[pair.slice(0, i)] = pair.slice(i + 1);
  }
  return labels;
}

// ---------- routing: #/ (list), #/m/<name>, #/m/<name>/files, #/m/<name>/compare ----------

function route() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const [path, query = ''] = raw.split('?');
  const params = new URLSearchParams(query);
  const m = /^\/m\/([^/]+)(?:\/(files|compare))?$/.exec(path);
  if (m) return { view: m[2] ?? 'model', name: decodeURIComponent(m[1]), params };
  return { view: 'list', params };
}

const hashFor = (path, params) => {
  const q = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== undefined && v !== '')).toString();
  return `#${path}${q ? `?${q}` : ''}`;
};
const modelHash = (name, sub = '', params = {}) => hashFor(`/m/${encodeURIComponent(name)}${sub}`, params);

let renderId = 0;
async function render() {
  const id = ++renderId;
  const r = route();
  const view = { list: listView, model: modelView, files: filesView, compare: compareView }[r.view];
  const content = await view(r).catch((err) => [
    notice('error', describe(err)),
    err instanceof ApiError && err.status === 401 ? h('p', {}, 'Paste a token above to sign in.') : null,
  ]);
  if (id !== renderId) return; // a newer navigation won
  main.replaceChildren(...[content].flat().filter(Boolean));
  document.body.dataset.view = r.view;
  document.body.dataset.renders = String(Number(document.body.dataset.renders ?? 0) + 1);
  // Milliseconds from the navigation's start until this view was in the page (fetches included).
  document.body.dataset.renderedAt = String(Math.round(performance.now()));
}

// ---------- the model list ----------

async function listView({ params }) {
  const prefix = params.get('prefix') ?? '';
  const labelText = params.get('labels') ?? '';
  const alias = params.get('alias') ?? '';
  const sort = params.get('sort') ?? 'name';
  const limit = params.get('limit') ?? '100';
  const cursor = params.get('cursor') ?? '';

  const query = new URLSearchParams({ limit, sort });
  if (prefix) query.set('prefix', prefix);
  if (alias) query.set('alias', alias);
  if (cursor) query.set('cursor', cursor);
  const status = h('div');
  let labels = {};
  try {
    labels = parseLabels(labelText);
  } catch (err) {
    status.append(notice('error', describe(err)));
  }
  for (const [k, v] of Object.entries(labels)) query.set(`label.${k}`, v);

  const form = h(
    'form',
    {
      class: 'search',
      id: 'search',
      onsubmit: (event) => {
        event.preventDefault();
        const f = new FormData(event.target);
        location.hash = hashFor('/', {
          prefix: f.get('prefix'),
          labels: f.get('labels'),
          alias: f.get('alias'),
          sort: f.get('sort'),
          limit: f.get('limit'),
        });
      },
    },
    h('label', {}, 'Name prefix', h('input', { name: 'prefix', value: prefix, placeholder: 'intent' })),
    h('label', {}, 'Labels', h('input', { name: 'labels', value: labelText, placeholder: 'team=nlp dataset=faq' })),
    h('label', {}, 'Alias', h('input', { name: 'alias', value: alias, placeholder: 'production' })),
    h(
      'label',
      {},
      'Sort',
      h(
        'select',
        { name: 'sort' },
        ['name', 'updatedAt'].map((s) =>
          h('option', { value: s, selected: s === sort }, s === 'name' ? 'by name' : 'recently updated'),
        ),
      ),
    ),
    h(
      'label',
      {},
      'Per page',
      h(
        'select',
        { name: 'limit' },
        ['50', '100', '500', '1000'].map((n) => h('option', { value: n, selected: n === limit }, n)),
      ),
    ),
    h('button', { type: 'submit' }, 'Search'),
  );

  let page;
  try {
    page = await api(`/models?${query}`);
  } catch (err) {
    // The search stays on the page, with the registry's word on what is wrong with it.
    if (!(err instanceof ApiError) || err.status === 401) throw err;
    status.append(notice('error', describe(err)));
    return [h('section', {}, form, status)];
  }
  const building = performance.now();
  const tbody = h('tbody');
  const rows = document.createDocumentFragment();
  for (const m of page.models) {
    rows.append(
      h(
        'tr',
        {},
        h('td', {}, h('a', { href: modelHash(m.name) }, m.name)),
        h('td', { class: 'num' }, m.version === undefined ? '—' : `v${m.version}`),
        h('td', { class: 'num' }, bytes(m.size)),
        h('td', { class: 'num' }, when(m.updatedAt)),
        h(
          'td',
          {},
          chips(m.aliases, 'alias', (a, v) => `${a} → v${v}`),
        ),
        h(
          'td',
          {},
          chips(m.labels, 'label', (k, v) => `${k}=${v}`),
        ),
      ),
    );
  }
  tbody.append(rows);
  const table = h(
    'table',
    { id: 'models' },
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        h('th', {}, 'Model'),
        h('th', { class: 'num' }, 'Version'),
        h('th', { class: 'num' }, 'Size'),
        h('th', { class: 'num' }, 'Updated'),
        h('th', {}, 'Aliases'),
        h('th', {}, 'Labels'),
      ),
    ),
    tbody,
  );
  // How long the rows took to build (shown to the test; the API call is not in it).
  document.body.dataset.buildMs = String(Math.round(performance.now() - building));
  const here = { prefix, labels: labelText, alias, sort, limit };
  const pager = (top) =>
    h(
      'div',
      { class: 'pager' },
      h(
        'span',
        { class: 'muted', id: top ? 'count' : undefined },
        `${page.models.length} model${page.models.length === 1 ? '' : 's'}${cursor ? ' (a later page)' : ''}`,
      ),
      cursor ? h('a', { href: hashFor('/', here) }, 'First page') : null,
      page.nextCursor
        ? h(
            'a',
            { id: top ? 'next' : undefined, href: hashFor('/', { ...here, cursor: page.nextCursor }) },
            'Next page →',
          )
        : null,
    );
  return [
    h('section', {}, form, status),
    pager(true),
    page.models.length === 0 ? h('p', { class: 'muted' }, 'No models match.') : table,
    page.models.length > 20 ? pager(false) : null,
    uploadPanel(undefined),
  ];
}

// ---------- upload (new model or new version) ----------

function uploadPanel(name) {
  const box = h('div');
  const progress = h('progress', { max: 100, value: 0, hidden: true, id: 'upload-progress' });
  const nameInput =
    name === undefined
      ? h('input', { name: 'name', id: 'upload-name', placeholder: 'model name', required: true })
      : null;
  const labelsInput = h('input', { id: 'upload-labels', placeholder: 'labels: git_sha=1a2b3c dataset=faq' });
  const fileInput = h('input', {
    type: 'file',
    id: 'upload-file',
    accept: '.tar.gz,.tgz,.tar',
    onchange: () => fileInput.files[0] && send(fileInput.files[0]),
  });
  const drop = h(
    'div',
    {
      class: 'drop',
      id: 'drop',
      ondragover: (e) => {
        e.preventDefault();
        drop.classList.add('over');
      },
      ondragleave: () => drop.classList.remove('over'),
      ondrop: (e) => {
        e.preventDefault();
        drop.classList.remove('over');
        const file = e.dataTransfer?.files?.[0];
        if (file) send(file);
      },
    },
    'Drop a .tar.gz here, or ',
    fileInput,
  );

  function send(file) {
    const target = name ?? nameInput.value.trim();
    if (!target) {
      box.replaceChildren(notice('error', 'Upload failed: give the model a name first.'));
      return;
    }
    let labels;
    try {
      labels = parseLabels(labelsInput.value);
    } catch (err) {
      box.replaceChildren(notice('error', `Upload failed: ${describe(err)}`));
      return;
    }
    const xhr = new XMLHttpRequest();
    xhr.open('PUT', `/models/${namePath(target)}`);
    for (const [k, v] of Object.entries(authHeaders())) xhr.setRequestHeader(k, v);
    xhr.setRequestHeader('content-type', file.name.endsWith('.tar') ? 'application/x-tar' : 'application/gzip');
    for (const [k, v] of Object.entries(labels)) xhr.setRequestHeader(`x-model-label-${k}`, v);
    progress.hidden = false;
    progress.value = 0;
    box.replaceChildren(notice('ok', `Uploading ${file.name} (${bytes(file.size)}) to ${target}…`));
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) progress.value = Math.round((e.loaded / e.total) * 100);
    };
    xhr.onload = () => {
      if (xhr.status >= 400) {
        box.replaceChildren(notice('error', `Upload failed: ${describe(apiError(xhr.status, xhr.responseText))}`));
        return;
      }
      progress.value = 100;
      const v = JSON.parse(xhr.responseText);
      box.replaceChildren(
        notice('ok', `Uploaded ${v.name} v${v.version} (${bytes(v.size)}).`),
        ' ',
        h('a', { href: modelHash(v.name) }, 'Open it'),
      );
      if (name !== undefined) setTimeout(render, 300);
    };
    xhr.onerror = () => box.replaceChildren(notice('error', 'Upload failed: the connection was lost.'));
    xhr.send(file);
  }

  return h(
    'section',
    { id: 'upload' },
    h('h2', {}, name === undefined ? 'Upload a model' : 'Upload a new version'),
    h('div', { class: 'row' }, nameInput, labelsInput),
    drop,
    progress,
    box,
  );
}

// ---------- a model ----------

async function modelView({ name }) {
  const [{ versions }, { aliases }] = await Promise.all([
    api(`/models/${namePath(name)}/versions`),
    api(`/models/${namePath(name)}/aliases`),
  ]);
  const current = versions[0];
  const status = h('div', { id: 'action-status' });
  const rerender = () => render();
  const aliasTarget = new Map(aliases.map((a) => [a.alias, a]));

  const setAlias = (alias, version) => {
    const existing = aliasTarget.get(alias);
    // Compare-and-swap: move the alias only from where this page saw it (412 otherwise).
    const headers = existing ? { 'if-match': existing.etag } : { 'if-none-match': '*' };
    return act(
      status,
      `Point ${alias} at v${version}`,
      () =>
        api(`/models/${namePath(name)}/aliases/${encodeURIComponent(alias)}`, {
          method: 'PUT',
          body: { version },
          headers,
        }),
      rerender,
    );
  };

  const rows = versions.map((v) =>
    h(
      'tr',
      { 'data-version': v.version },
      h('td', { class: 'num' }, `v${v.version}`, v === current ? h('span', { class: 'chip' }, 'current') : null),
      h('td', { class: 'num' }, when(v.createdAt)),
      h('td', { class: 'num' }, bytes(v.size)),
      h('td', { class: 'mono', title: v.sha256 }, shortDigest(v.sha256)),
      h('td', {}, v.origin ?? 'unknown'),
      h(
        'td',
        {},
        chips(v.labels, 'label', (k, val) => `${k}=${val}`),
      ),
      h(
        'td',
        {},
        (v.aliases ?? []).map((a) => h('span', { class: 'chip alias' }, a)),
      ),
      h(
        'td',
        { class: 'actions' },
        h('a', { href: modelHash(name, '/files', { version: v.version }) }, 'Files'),
        ' ',
        download(`/models/${namePath(name)}?version=${v.version}`, `${name.replaceAll('/', '_')}-v${v.version}.tar.gz`),
        ' ',
        v === current
          ? null
          : h(
              'button',
              {
                type: 'button',
                class: 'rollback',
                onclick: () =>
                  act(
                    status,
                    `Roll back to v${v.version}`,
                    () =>
                      api(`/models/${namePath(name)}/rollback`, {
                        method: 'POST',
                        body: { version: v.version },
                        headers: { 'if-match': current.etag },
                      }),
                    rerender,
                  ),
              },
              'Roll back to this',
            ),
        v === current
          ? null
          : h(
              'button',
              {
                type: 'button',
                class: 'danger delete-version',
                onclick: () =>
                  confirm(`Delete v${v.version} of ${name}? Its bytes are removed; its number is never reused.`) &&
                  act(
                    status,
                    `Delete v${v.version}`,
                    () => api(`/models/${namePath(name)}?version=${v.version}`, { method: 'DELETE' }),
                    rerender,
                  ),
              },
              'Delete',
            ),
      ),
    ),
  );

  const versionSelect = (id, selected) =>
    h(
      'select',
      { id },
      versions.map((v) => h('option', { value: v.version, selected: v.version === selected }, `v${v.version}`)),
    );
  const aliasName = h('input', { id: 'alias-name', placeholder: 'production', list: 'known-aliases' });
  const aliasVersion = versionSelect('alias-version', current.version);
  const compareA = versionSelect('compare-a', versions[1]?.version ?? current.version);
  const compareB = versionSelect('compare-b', current.version);

  const refs = [name, ...aliases.map((a) => `${name}@${a.alias}`)];
  const refSelect = h(
    'select',
    { id: 'snippet-ref', onchange: () => snippets.replaceChildren(...snippetsFor(refSelect.value)) },
    refs.map((r) => h('option', { value: r }, r)),
  );
  const snippets = h('div', {}, snippetsFor(refs[1] ?? refs[0]));
  refSelect.value = refs[1] ?? refs[0];

  return [
    h('p', {}, h('a', { href: '#/' }, '← all models')),
    h('h1', {}, name),
    h(
      'p',
      { class: 'muted' },
      `current v${current.version}, ${bytes(current.size)}, ${when(current.createdAt)}`,
      ' · ',
      h('a', { href: modelHash(name, '/files') }, 'files'),
    ),
    status,
    h(
      'section',
      { id: 'aliases' },
      h('h2', {}, 'Aliases'),
      aliases.length === 0
        ? h('p', { class: 'muted' }, 'No aliases yet.')
        : h(
            'div',
            {},
            aliases.map((a) =>
              h(
                'span',
                { class: 'chip alias', 'data-alias': a.alias },
                `${a.alias} → v${a.version}`,
                h(
                  'button',
                  {
                    type: 'button',
                    title: `remove ${a.alias}`,
                    onclick: () =>
                      act(
                        status,
                        `Remove ${a.alias}`,
                        () =>
                          api(`/models/${namePath(name)}/aliases/${encodeURIComponent(a.alias)}`, {
                            method: 'DELETE',
                            headers: { 'if-match': a.etag },
                          }),
                        rerender,
                      ),
                  },
                  '×',
                ),
              ),
            ),
          ),
      h(
        'datalist',
        { id: 'known-aliases' },
        aliases.map((a) => h('option', { value: a.alias })),
      ),
      h(
        'form',
        {
          class: 'row',
          id: 'alias-form',
          onsubmit: (e) => {
            e.preventDefault();
            const alias = aliasName.value.trim();
            if (alias) setAlias(alias, Number(aliasVersion.value));
          },
        },
        'Point alias',
        aliasName,
        'at',
        aliasVersion,
        h('button', { type: 'submit', id: 'alias-set' }, 'Set alias'),
      ),
    ),
    h(
      'section',
      { id: 'versions' },
      h('h2', {}, 'Versions'),
      h(
        'table',
        {},
        h(
          'thead',
          {},
          h(
            'tr',
            {},
            ['Version', 'Created', 'Size', 'SHA-256', 'Origin', 'Labels', 'Aliases', ''].map((t) => h('th', {}, t)),
          ),
        ),
        h('tbody', {}, rows),
      ),
      h(
        'form',
        {
          class: 'row',
          id: 'compare-form',
          onsubmit: (e) => {
            e.preventDefault();
            location.hash = modelHash(name, '/compare', { a: compareA.value, b: compareB.value });
          },
        },
        'Compare',
        compareA,
        'with',
        compareB,
        h('button', { type: 'submit' }, 'Compare'),
      ),
    ),
    h(
      'section',
      { id: 'snippets' },
      h('h2', {}, 'Use it'),
      h('div', { class: 'row' }, 'Model reference', refSelect),
      snippets,
    ),
    uploadPanel(name),
  ];
}

function snippetsFor(ref) {
  const url = `${location.origin}/models/${namePath(ref)}`;
  const auth = token() ? ' -H "Authorization: Bearer $REGISTRY_TOKEN"' : '';
  return [
    snippet('Download with curl', `curl -fSL${auth} -o model.tar.gz ${url}`),
    snippet(
      'Rasa endpoints.yml (the model server: Rasa polls it and loads a new version when the ETag changes)',
      // biome-ignore lint/suspicious/noTemplateCurlyInString: Rasa expands ${REGISTRY_TOKEN} from its environment
      `models:\n  url: ${url}\n  wait_time_between_pulls: 10${token() ? '\n  # with AUTH_TOKENS set:\n  # headers:\n  #   Authorization: "Bearer ${REGISTRY_TOKEN}"' : ''}`,
    ),
    snippet(
      'Watch loop: wake as soon as it changes (long poll with ?wait=)',
      `etag=""\nwhile true; do\n  code=$(curl -sSL${auth} -o next.tar.gz -D headers.txt -w '%{http_code}' \\\n    -H "If-None-Match: $etag" "${url}?wait=300")\n  if [ "$code" = 200 ]; then\n    etag=$(grep -i -m1 '^etag:' headers.txt | cut -d' ' -f2 | tr -d '\\r')\n    mv next.tar.gz model.tar.gz && echo "new version: $etag"\n  elif [ "$code" != 304 ]; then\n    sleep 5\n  fi\ndone`,
    ),
  ];
}

// ---------- files of a version ----------

async function filesView({ name, params }) {
  const { versions } = await api(`/models/${namePath(name)}/versions`);
  const version = params.get('version') ? Number(params.get('version')) : versions[0].version;
  const manifest = await api(`/models/${namePath(name)}/files?version=${version}`);
  const preview = h('div', { id: 'preview' });
  const base = `/models/${namePath(name)}/files/`;

  async function show(entry) {
    preview.replaceChildren(notice('ok', `Loading ${entry.path}…`));
    try {
      const res = await fetch(`${base}${filePath(entry.path)}?version=${version}`, { headers: authHeaders() });
      if (!res.ok) throw apiError(res.status, await res.text());
      const buf = new Uint8Array(await res.arrayBuffer());
      if (buf.subarray(0, 8192).includes(0)) {
        preview.replaceChildren(notice('ok', `${entry.path} is a binary file: download it instead.`));
        return;
      }
      preview.replaceChildren(
        h('h2', {}, entry.path),
        h('pre', { class: 'preview', id: 'preview-text' }, new TextDecoder().decode(buf)),
      );
    } catch (err) {
      preview.replaceChildren(notice('error', `Preview failed: ${describe(err)}`));
    }
  }

  const rows = manifest.files.map((f) => {
    const depth = f.path.split('/').length - 1;
    const label =
      f.path.split('/').pop() + (f.type === 'directory' ? '/' : f.type === 'symlink' ? ` → ${f.target}` : '');
    const cell = h('td', { class: `path ${f.type === 'directory' ? 'dir' : ''}`, title: f.path }, label);
    cell.style.paddingLeft = `${8 + depth * 18}px`; // CSSOM, not a style attribute: allowed by the CSP
    return h(
      'tr',
      { 'data-path': f.path },
      cell,
      h('td', { class: 'num' }, f.type === 'file' ? bytes(f.size) : ''),
      h('td', { class: 'mono', title: f.sha256 ?? '' }, shortDigest(f.sha256)),
      h(
        'td',
        { class: 'actions' },
        f.type === 'file' && f.size <= PREVIEW_MAX
          ? h('button', { type: 'button', class: 'preview-button', onclick: () => show(f) }, 'Preview')
          : null,
        f.type === 'file' ? download(`${base}${filePath(f.path)}?version=${version}`, f.path.split('/').pop()) : null,
      ),
    );
  });
  const total = manifest.files.filter((f) => f.type === 'file').reduce((s, f) => s + f.size, 0);
  return [
    h('p', {}, h('a', { href: modelHash(name) }, `← ${name}`)),
    h('h1', {}, `${name} v${manifest.version}: files`),
    h(
      'div',
      { class: 'row' },
      'Version',
      h(
        'select',
        {
          id: 'files-version',
          onchange: (e) => {
            location.hash = modelHash(name, '/files', { version: e.target.value });
          },
        },
        versions.map((v) =>
          h('option', { value: v.version, selected: v.version === manifest.version }, `v${v.version}`),
        ),
      ),
      h(
        'span',
        { class: 'muted' },
        `${manifest.files.filter((f) => f.type === 'file').length} files, ${bytes(total)} extracted`,
      ),
    ),
    h(
      'table',
      { class: 'tree', id: 'files' },
      h(
        'thead',
        {},
        h('tr', {}, h('th', {}, 'Path'), h('th', { class: 'num' }, 'Size'), h('th', {}, 'SHA-256'), h('th', {}, '')),
      ),
      h('tbody', {}, rows),
    ),
    preview,
  ];
}

// ---------- compare two versions ----------

async function compareView({ name, params }) {
  const a = Number(params.get('a'));
  const b = Number(params.get('b'));
  const [{ versions }, left, right] = await Promise.all([
    api(`/models/${namePath(name)}/versions`),
    api(`/models/${namePath(name)}/files?version=${a}`),
    api(`/models/${namePath(name)}/files?version=${b}`),
  ]);
  const va = versions.find((v) => v.version === a);
  const vb = versions.find((v) => v.version === b);
  const files = (m) => new Map(m.files.filter((f) => f.type !== 'directory').map((f) => [f.path, f]));
  const fa = files(left);
  const fb = files(right);
  const added = [...fb.values()].filter((f) => !fa.has(f.path));
  const removed = [...fa.values()].filter((f) => !fb.has(f.path));
  const changed = [...fb.values()].filter((f) => {
    const o = fa.get(f.path);
    if (!o) return false;
    if (o.type !== f.type || o.size !== f.size || o.target !== f.target) return true;
    return o.sha256 !== undefined && f.sha256 !== undefined && o.sha256 !== f.sha256;
  });
  const unchanged = [...fb.keys()].filter((p) => fa.has(p)).length - changed.length;
  const labelKeys = [...new Set([...Object.keys(va?.labels ?? {}), ...Object.keys(vb?.labels ?? {})])].sort();
  const labelDiff = labelKeys.filter((k) => va?.labels?.[k] !== vb?.labels?.[k]);

  const fileTable = (id, title, cls, list, cells) =>
    h(
      'section',
      { id },
      h('h2', { class: cls }, `${title} (${list.length})`),
      list.length === 0
        ? h('p', { class: 'muted' }, 'None.')
        : h(
            'table',
            {},
            h(
              'tbody',
              {},
              list.map((f) => h('tr', { 'data-path': f.path }, h('td', { class: 'mono' }, f.path), cells(f))),
            ),
          ),
    );

  return [
    h('p', {}, h('a', { href: modelHash(name) }, `← ${name}`)),
    h('h1', {}, `${name}: v${a} → v${b}`),
    h(
      'p',
      { class: 'muted' },
      `${unchanged} file${unchanged === 1 ? '' : 's'} unchanged. v${a}: ${shortDigest(left.sha256)}, v${b}: ${shortDigest(right.sha256)}`,
    ),
    h(
      'section',
      { id: 'label-diff' },
      h('h2', {}, `Labels (${labelDiff.length} differ)`),
      labelDiff.length === 0
        ? h('p', { class: 'muted' }, 'The same labels.')
        : h(
            'table',
            {},
            h('thead', {}, h('tr', {}, h('th', {}, 'Label'), h('th', {}, `v${a}`), h('th', {}, `v${b}`))),
            h(
              'tbody',
              {},
              labelDiff.map((k) =>
                h(
                  'tr',
                  { 'data-label': k },
                  h('td', { class: 'mono' }, k),
                  h('td', {}, va?.labels?.[k] ?? '—'),
                  h('td', {}, vb?.labels?.[k] ?? '—'),
                ),
              ),
            ),
          ),
    ),
    fileTable('added', 'Added', 'added', added, (f) => h('td', { class: 'num' }, bytes(f.size))),
    fileTable('removed', 'Removed', 'removed', removed, (f) => h('td', { class: 'num' }, bytes(f.size))),
    fileTable('changed', 'Changed', 'changed', changed, (f) => {
      const o = fa.get(f.path);
      return [
        h('td', { class: 'num' }, `${bytes(o.size)} → ${bytes(f.size)}`),
        h('td', { class: 'mono' }, `${shortDigest(o.sha256)} → ${shortDigest(f.sha256)}`),
      ];
    }),
  ];
}

// ---------- sign-in ----------

function showSignedIn() {
  const signedIn = token() !== '';
  document.getElementById('sign-in').hidden = signedIn;
  document.getElementById('signed-in').hidden = !signedIn;
}

document.getElementById('sign-in').addEventListener('submit', (event) => {
  event.preventDefault();
  const input = document.getElementById('token');
  const value = input.value.trim();
  input.value = '';
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  showSignedIn();
  render();
});
document.getElementById('sign-out').addEventListener('click', () => {
  sessionStorage.removeItem(TOKEN_KEY);
  showSignedIn();
  render();
});

window.addEventListener('hashchange', render);
showSignedIn();
render();
