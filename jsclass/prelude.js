// The Strata JavaScript prelude: the Durable Objects base class and the
// Web APIs a handler needs, on top of the host functions in __host (Go).
(function (g, host) {
  "use strict";
  class DurableObject {
    constructor(ctx, env) { this.ctx = ctx; this.env = env; }
  }

  // The Web APIs are defined on first use: an activation that never
  // touches them does not pay for them (docs/design-notes.md).
  function lazy(obj, name, make) {
    Object.defineProperty(obj, name, {
      configurable: true, enumerable: false,
      get() { const v = make(); Object.defineProperty(obj, name, { value: v, writable: true, configurable: true, enumerable: false }); return v; },
      set(v) { Object.defineProperty(obj, name, { value: v, writable: true, configurable: true, enumerable: false }); },
    });
  }
  function bodyBytes(body) {
    if (body === undefined || body === null) return null;
    if (body instanceof Uint8Array) return body;
    if (body instanceof ArrayBuffer) return new Uint8Array(body);
    if (ArrayBuffer.isView(body)) return new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
    return host.encodeUTF8(String(body));
  }

  let webAPI;
  function web() {
    if (webAPI) return webAPI;
  class Headers {
    constructor(init) {
      this._m = new Map();
      if (init instanceof Headers) { init.forEach((v, k) => this.append(k, v)); }
      else if (Array.isArray(init)) { for (const [k, v] of init) this.append(k, v); }
      else if (init && typeof init === "object") { for (const k of Object.keys(init)) this.append(k, init[k]); }
    }
    append(k, v) { k = String(k).toLowerCase(); const c = this._m.get(k); this._m.set(k, c === undefined ? String(v) : c + ", " + String(v)); }
    set(k, v) { this._m.set(String(k).toLowerCase(), String(v)); }
    get(k) { const v = this._m.get(String(k).toLowerCase()); return v === undefined ? null : v; }
    has(k) { return this._m.has(String(k).toLowerCase()); }
    delete(k) { this._m.delete(String(k).toLowerCase()); }
    forEach(fn, self) { for (const [k, v] of this.entries()) fn.call(self, v, k, this); }
    *entries() { yield* [...this._m.entries()].sort((a, b) => a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0); }
    *keys() { for (const [k] of this.entries()) yield k; }
    *values() { for (const [, v] of this.entries()) yield v; }
    [Symbol.iterator]() { return this.entries(); }
  }

  class Body {
    _initBody(body) { this._body = bodyBytes(body); this.bodyUsed = false; }
    _take() { if (this.bodyUsed) throw new TypeError("body already used"); this.bodyUsed = true; return this._body || new Uint8Array(0); }
    get body() { return this._body; }
    async text() { return host.decodeUTF8(this._take()); }
    async json() { return JSON.parse(host.decodeUTF8(this._take())); }
    async arrayBuffer() { const b = this._take(); return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength); }
    async bytes() { return new Uint8Array(this._take()); }
  }

  class Request extends Body {
    constructor(input, init) {
      super();
      init = init || {};
      if (input instanceof Request) {
        this.url = input.url; this.method = input.method; this.headers = new Headers(input.headers);
        this._initBody(init.body !== undefined ? init.body : input._body);
      } else {
        this.url = String(input); this.method = "GET"; this.headers = new Headers();
        this._initBody(init.body);
      }
      if (init.method) this.method = String(init.method).toUpperCase();
      if (init.headers) this.headers = new Headers(init.headers);
    }
    clone() { return new Request(this); }
  }

  class Response extends Body {
    constructor(body, init) {
      super();
      init = init || {};
      this.status = init.status === undefined ? 200 : init.status | 0;
      if (this.status !== 101 && (this.status < 200 || this.status > 599)) throw new RangeError("status " + this.status + " is not in 200..599");
      this.statusText = init.statusText || "";
      this.headers = new Headers(init.headers);
      this.webSocket = init.webSocket || null;
      if (typeof body === "string" && !this.headers.has("content-type")) this.headers.set("content-type", "text/plain;charset=UTF-8");
      this._initBody(body);
    }
    get ok() { return this.status >= 200 && this.status < 300; }
    static json(v, init) {
      const r = new Response(JSON.stringify(v), init);
      r.headers.set("content-type", "application/json");
      return r;
    }
  }

    webAPI = { Headers, Request, Response };
    return webAPI;
  }
  let urlAPI;
  function urls() {
    if (urlAPI) return urlAPI;
  class URLSearchParams {
    constructor(init) {
      this._p = [];
      if (typeof init === "string") {
        for (const [k, v] of host.parseQuery(init)) this._p.push([k, v]);
      } else if (init && typeof init === "object") {
        for (const k of Object.keys(init)) this._p.push([k, String(init[k])]);
      }
    }
    get(k) { const e = this._p.find(e => e[0] === k); return e ? e[1] : null; }
    getAll(k) { return this._p.filter(e => e[0] === k).map(e => e[1]); }
    has(k) { return this._p.some(e => e[0] === k); }
    set(k, v) { this.delete(k); this._p.push([k, String(v)]); }
    append(k, v) { this._p.push([k, String(v)]); }
    delete(k) { this._p = this._p.filter(e => e[0] !== k); }
    *entries() { yield* this._p.map(e => [e[0], e[1]]); }
    [Symbol.iterator]() { return this.entries(); }
    toString() { return host.formatQuery(this._p); }
  }

  class URL {
    constructor(u, base) {
      const p = host.parseURL(String(u), base === undefined ? "" : String(base));
      Object.assign(this, p);
      this.searchParams = new URLSearchParams(p.search.replace(/^\?/, ""));
    }
    toString() { return this.href; }
    toJSON() { return this.href; }
  }

    urlAPI = { URL, URLSearchParams };
    return urlAPI;
  }
  function texts() {
  class TextEncoder { get encoding() { return "utf-8"; } encode(s) { return host.encodeUTF8(s === undefined ? "" : String(s)); } }
  class TextDecoder {
    constructor(label) { if (label && !/^utf-?8$/i.test(label)) throw new RangeError("only utf-8 is supported"); }
    get encoding() { return "utf-8"; }
    decode(b) { return b === undefined ? "" : host.decodeUTF8(bodyBytes(b)); }
  }

    return { TextEncoder, TextDecoder };
  }
  let wsAPI;
  function sockets() {
    if (wsAPI) return wsAPI;
  class WebSocketPair {
    constructor() {
      const client = host.newClientSocket();
      const server = host.newServerSocket();
      this[0] = client; this[1] = server;
    }
  }
  class WebSocketRequestResponsePair {
    constructor(request, response) { this.request = String(request); this.response = String(response); }
    getRequest() { return this.request; }
    getResponse() { return this.response; }
  }

    wsAPI = { WebSocketPair, WebSocketRequestResponsePair };
    return wsAPI;
  }
  function misc() {
  function fmt(args) {
    return args.map(a => typeof a === "string" ? a : (a instanceof Error ? String(a.stack || a) : (() => { try { return JSON.stringify(a); } catch (e) { return String(a); } })())).join(" ");
  }
  const console = {
    log: (...a) => host.log("info", fmt(a)),
    info: (...a) => host.log("info", fmt(a)),
    debug: (...a) => host.log("debug", fmt(a)),
    warn: (...a) => host.log("warn", fmt(a)),
    error: (...a) => host.log("error", fmt(a)),
  };

  const crypto = {
    randomUUID: () => host.randomUUID(),
    getRandomValues: (a) => { host.fillRandom(a); return a; },
  };

  function structuredClone(v) { return host.clone(v); }

    return { console, crypto, structuredClone };
  }
  // ctx.storage.sql.exec's cursor (Go hands it the columns and raw rows).
  let Cursor;
  host.makeCursor = function (cols, rows, read, written) {
    if (!Cursor) Cursor = cursorClass();
    return new Cursor(cols, rows, read, written);
  };
  function cursorClass() {
  class SqlStorageCursor {
    constructor(cols, rows, read, written) { this._c = cols; this._r = rows; this._i = 0; this.rowsRead = read; this.rowsWritten = written; }
    get columnNames() { return this._c.slice(); }
    _obj(r) { const o = {}; for (let j = 0; j < this._c.length; j++) o[this._c[j]] = r[j]; return o; }
    next() { return this._i < this._r.length ? { done: false, value: this._obj(this._r[this._i++]) } : { done: true, value: undefined }; }
    toArray() { const out = []; while (this._i < this._r.length) out.push(this._obj(this._r[this._i++])); return out; }
    one() {
      const left = this._r.length - this._i;
      if (left !== 1) throw new Error("Expected exactly one result from SQL query, but got " + (left === 0 ? "no results." : "multiple results."));
      return this._obj(this._r[this._i++]);
    }
    raw() {
      const self = this;
      const it = {
        next() { return self._i < self._r.length ? { done: false, value: self._r[self._i++].slice() } : { done: true, value: undefined }; },
        toArray() { const out = []; while (self._i < self._r.length) out.push(self._r[self._i++].slice()); return out; },
        [Symbol.iterator]() { return it; },
      };
      return it;
    }
    [Symbol.iterator]() { return this; }
  }
    return SqlStorageCursor;
  }

  const strata = { DurableObject };
  const modules = { "strata": strata, "cloudflare:workers": strata };
  g.require = function (name) {
    const m = modules[name];
    if (!m) throw new Error("module " + JSON.stringify(name) + " is not available (only \"strata\" and \"cloudflare:workers\")");
    return m;
  };
  g.DurableObject = DurableObject;
  // The Web API globals are defined (lazily) only for the names the
  // class's code mentions (Go finds them once per class version, see
  // globalNames in compile.go): defining all of them cost two thirds of
  // the prelude's run on every activation.
  let textAPI, miscAPI;
  host.defineGlobals = function (names) {
    const makers = {
      Headers: () => web().Headers, Request: () => web().Request, Response: () => web().Response,
      URL: () => urls().URL, URLSearchParams: () => urls().URLSearchParams,
      TextEncoder: () => (textAPI = textAPI || texts()).TextEncoder,
      TextDecoder: () => (textAPI = textAPI || texts()).TextDecoder,
      WebSocketPair: () => sockets().WebSocketPair,
      WebSocketRequestResponsePair: () => sockets().WebSocketRequestResponsePair,
      console: () => (miscAPI = miscAPI || misc()).console,
      crypto: () => (miscAPI = miscAPI || misc()).crypto,
      structuredClone: () => (miscAPI = miscAPI || misc()).structuredClone,
    };
    for (let i = 0; i < names.length; i++) {
      const n = names[i];
      if (!makers[n] || Object.prototype.hasOwnProperty.call(g, n)) continue;
      lazy(g, n, makers[n]);
      if (n === "WebSocketPair" || n === "WebSocketRequestResponsePair") lazy(strata, n, makers[n]);
    }
  };
})(globalThis, __host);
