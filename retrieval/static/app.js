// The shopper's page: choose a query (upload or catalog), edit it, see the modified image and
// the hits, click a hit to make it the next query. Plain JS against the JSON API under /v1/
// (bodies are the proto3 JSON mapping of the gRPC messages); no build step, nothing from a CDN.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const SAMPLE_SIZE = 12;

  const state = {
    attrs: null,        // ListAttributesResponse
    offers: { strength: false, variants: false },
    query: null,        // {kind: 'upload', file, url} or {kind: 'item', id, item}
    searches: 0,
    busy: false,
  };

  // --- talking to the server -----------------------------------------------------------------
  class ApiError extends Error {
    constructor(message, code, status) {
      super(message);
      this.code = code;
      this.status = status;
    }
  }

  async function api(path, options = {}) {
    let resp;
    try {
      resp = await fetch(path, options);
    } catch (err) {
      throw new ApiError(`cannot reach the server (${err.message})`, 'UNAVAILABLE', 0);
    }
    const isJson = (resp.headers.get('content-type') || '').includes('application/json');
    const body = isJson ? await resp.json().catch(() => null) : null;
    if (!resp.ok) {
      const e = body && body.error;
      throw new ApiError(e ? e.message : `${resp.status} ${resp.statusText}`, e ? e.code : '', resp.status);
    }
    return body;
  }

  const imageUrl = (id) => `/v1/items/${encodeURIComponent(id)}/image`;

  // --- errors ----------------------------------------------------------------------------------------
  function showError(what, err) {
    const box = $('error');
    box.textContent = `${what}: ${err.message}` + (err.code ? ` (${err.code})` : '');
    box.hidden = false;
  }

  function clearError() {
    $('error').hidden = true;
    $('error').textContent = '';
  }

  // --- small DOM helpers -------------------------------------------------------------------------------
  function el(tag, props = {}, children = []) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props)) {
      if (k === 'dataset') Object.assign(node.dataset, v);
      else if (k in node) node[k] = v;
      else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c);
    return node;
  }

  function attributeChips(attributes) {
    const keys = Object.keys(attributes || {});
    return el('p', { className: 'chips' }, keys.map((k) => el('span', { className: 'chip', title: k }, [attributes[k]])));
  }

  // --- what the server offers ---------------------------------------------------------------------------
  // A generator that takes an edit strength ("continuous") or returns several diverse edits
  // ("multi_modal") says so in ListAttributes.generators; until one does, those controls stay hidden.
  function offers(attrs) {
    const gens = attrs.generators || [];
    return {
      strength: gens.some((g) => g.continuous === true),
      variants: gens.some((g) => g.multi_modal === true),
    };
  }

  function buildEditControls() {
    const box = $('edit-controls');
    box.replaceChildren();
    for (const g of state.attrs.groups) {
      if (!g.editable_values || g.editable_values.length === 0) continue;
      const select = el('select', { dataset: { group: g.name }, name: g.name, id: `edit-${g.name}` },
        [el('option', { value: '' }, ['keep'])]
          .concat(g.editable_values.map((v) => el('option', { value: v }, [v]))));
      box.append(el('label', { className: 'control' }, [el('span', {}, [g.name.replace(/_/g, ' ')]), select]));
    }
    $('to-model-row').hidden = !state.attrs.product_to_model;
    $('to-product-row').hidden = !state.attrs.model_to_product;
    $('strength-row').hidden = !state.offers.strength;
    $('variants-row').hidden = !state.offers.variants;
  }

  // "keep" shows the query's own value when it is known (a catalog item)
  function resetEdits() {
    const own = state.query && state.query.kind === 'item' ? state.query.item.attributes || {} : {};
    for (const select of document.querySelectorAll('#edit-controls select')) {
      const group = select.dataset.group;
      select.value = '';
      select.options[0].textContent = own[group] ? `keep (${own[group]})` : 'keep';
      for (const opt of Array.from(select.options).slice(1)) {
        opt.textContent = opt.value === own[group] ? `${opt.value} (now)` : opt.value;
      }
    }
    $('to-model').checked = false;
    $('to-product').checked = false;
  }

  function modifications() {
    const mods = [];
    // a worn photo becomes a product photo first, so the edits apply to the product
    if ($('to-product').checked) mods.push({ model_to_product: {} });
    for (const select of document.querySelectorAll('#edit-controls select')) {
      if (!select.value) continue;
      const edit = { group: select.dataset.group, value: select.value };
      if (state.offers.strength) edit.strength = Number($('strength').value);
      mods.push({ edit });
    }
    if ($('to-model').checked) mods.push({ product_to_model: {} });
    return mods;
  }

  function describe(mods) {
    return mods.map((m) => (m.edit ? `${m.edit.group} → ${m.edit.value}`
      : m.model_to_product ? 'as a product photo' : 'worn by a model')).join(', ');
  }

  // --- the query ---------------------------------------------------------------------------------------------
  function showQuery() {
    const q = state.query;
    $('result').hidden = false;
    const img = $('query-image');
    img.hidden = false;
    img.onerror = () => { img.hidden = true; };
    if (q.kind === 'upload') {
      img.src = q.url;
      $('query-caption').textContent = `query: your photo (${q.file.name || 'upload'})`;
    } else {
      img.src = imageUrl(q.id);
      $('query-caption').textContent = `query: ${q.item.name || q.id} (${q.id})`;
    }
    $('query-caption').dataset.query = q.kind === 'item' ? q.id : 'upload';
  }

  function setQuery(query) {
    if (state.query && state.query.kind === 'upload') URL.revokeObjectURL(state.query.url);
    state.query = query;
    resetEdits();
    showQuery();
    $('search').disabled = false;
    return runSearch();
  }

  function pickItem(item) {
    return setQuery({ kind: 'item', id: item.id, item });
  }

  // --- search ----------------------------------------------------------------------------------------------
  function setBusy(busy) {
    state.busy = busy;
    document.body.dataset.state = busy ? 'busy' : 'ready';
    $('search').disabled = busy || !state.query;
    $('search').textContent = busy ? 'Searching…' : 'Search';
  }

  function clearResult() {
    $('modified').hidden = true;
    $('modified-images').replaceChildren();
    $('hits').replaceChildren();
    $('timings').textContent = '';
  }

  async function runSearch() {
    if (!state.query || state.busy) return;
    const mods = modifications();
    const req = { modifications: mods, top_k: Number($('top-k').value) || SAMPLE_SIZE, return_modified_image: mods.length > 0 };
    if (state.offers.variants && mods.length) req.variants = Number($('variants').value) || 1;
    let options;
    if (state.query.kind === 'upload') {
      const form = new FormData();
      form.append('image', state.query.file);
      form.append('request', JSON.stringify(req));
      options = { method: 'POST', body: form };
    } else {
      req.query = { item_id: state.query.id };
      options = { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(req) };
    }
    setBusy(true);
    clearError();
    const t0 = performance.now();
    try {
      const resp = await api('/v1/search', options);
      renderResult(resp, mods, performance.now() - t0);
    } catch (err) {
      clearResult();
      showError(state.query.kind === 'upload' ? 'your photo could not be searched' : 'search failed', err);
    } finally {
      state.searches += 1;
      document.body.dataset.searches = String(state.searches);
      setBusy(false);
    }
  }

  function renderResult(resp, mods, roundTripMs) {
    clearResult();
    // one modified image today; several when the server returns variants
    const pngs = (resp.modified_images && resp.modified_images.length) ? resp.modified_images
      : (resp.modified_image ? [resp.modified_image] : []);
    if (pngs.length) {
      $('modified-images').append(...pngs.map((b64, i) =>
        el('img', { src: `data:image/png;base64,${b64}`, alt: `modified query ${i + 1}`, className: 'modified-image' })));
      $('modified-caption').textContent = `modified: ${describe(mods)}`;
      $('modified').hidden = false;
    }
    const stages = (resp.timings || []).map((t) => `${t.stage} ${t.ms.toFixed(1)} ms`);
    $('timings').textContent = `server: ${stages.join(' · ')} · page round trip ${roundTripMs.toFixed(0)} ms`
      + ` · index ${resp.index_version}`;
    const hits = resp.hits || [];
    if (!hits.length) {
      $('hits').append(el('p', { className: 'muted' }, ['No hits (are the filters too narrow?)']));
      return;
    }
    for (const h of hits) {
      const item = h.item || { id: h.id };
      const card = el('button', { type: 'button', className: 'card hit', dataset: { id: h.id }, title: `search with ${h.id}` }, [
        el('img', { src: imageUrl(h.id), alt: item.name || h.id, loading: 'lazy' }),
        el('p', { className: 'name' }, [`${h.rank}. ${item.name || h.id}`]),
        el('p', { className: 'muted' }, [[item.brand, h.id].filter(Boolean).join(' · ')]),
        attributeChips(item.attributes),
        el('p', { className: 'score' }, [`score ${h.score.toFixed(3)}`]),
      ]);
      card.addEventListener('click', () => pickItem(item));
      $('hits').append(card);
    }
  }

  // --- the catalog sample ----------------------------------------------------------------------------------
  async function loadSample() {
    const grid = $('catalog-grid');
    try {
      const resp = await api(`/v1/sample?count=${SAMPLE_SIZE}`);
      grid.replaceChildren(...resp.items.map((item) => {
        const card = el('button', { type: 'button', className: 'card pick', dataset: { id: item.id }, title: item.name || item.id }, [
          el('img', { src: imageUrl(item.id), alt: item.name || item.id, loading: 'lazy' }),
          el('p', { className: 'name' }, [item.name || item.id]),
        ]);
        card.addEventListener('click', () => pickItem(item));
        return card;
      }));
    } catch (err) {
      showError('could not load catalog items', err);
    }
  }

  // --- start --------------------------------------------------------------------------------------------------
  async function start() {
    try {
      state.attrs = await api('/v1/attributes');
    } catch (err) {
      showError('the server is not ready', err);
      setTimeout(start, 2000);
      return;
    }
    clearError();
    state.offers = offers(state.attrs);
    const gens = (state.attrs.generators || []).map((g) => g.name).join(', ') || 'none';
    $('index-info').textContent = `${state.attrs.index_size} items · index ${state.attrs.index_version} · generators: ${gens}`;
    buildEditControls();
    document.body.dataset.state = 'ready';
    await loadSample();
  }

  $('upload').addEventListener('change', (ev) => {
    const file = ev.target.files && ev.target.files[0];
    if (file) setQuery({ kind: 'upload', file, url: URL.createObjectURL(file) });
    ev.target.value = '';  // choosing the same file again is a new query
  });
  $('shuffle').addEventListener('click', loadSample);
  $('edit-form').addEventListener('submit', (ev) => { ev.preventDefault(); runSearch(); });
  $('reset-edits').addEventListener('click', resetEdits);
  $('strength').addEventListener('input', () => { $('strength-value').value = Number($('strength').value).toFixed(2); });

  start();
})();
