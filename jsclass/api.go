package jsclass

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/dop251/goja"
	"github.com/strata-objects/strata/objects"
)

// The objects a class sees: __host (used by the prelude), this.ctx and
// this.env. Each function runs on the activation's goroutine, within a turn.

func (in *instance) store() store {
	if in.st == nil {
		in.throw(fmt.Errorf("storage used outside a turn"))
	}
	return in.st
}

func (in *instance) hostObject() *goja.Object {
	vm := in.vm
	h := newLazy(vm)
	in.host = h.obj
	h.define("encodeUTF8", func(s string) goja.Value { return jsBytes(vm, []byte(s)) })
	h.define("decodeUTF8", func(v goja.Value) string {
		b, _ := v.Export().([]byte)
		return strings.ToValidUTF8(string(b), "\uFFFD")
	})
	h.define("parseQuery", func(s string) [][]string {
		var out [][]string
		for _, part := range strings.Split(s, "&") {
			if part == "" {
				continue
			}
			k, v, _ := strings.Cut(part, "=")
			k, _ = url.QueryUnescape(k)
			v, _ = url.QueryUnescape(v)
			out = append(out, []string{k, v})
		}
		return out
	})
	h.define("formatQuery", func(pairs [][]string) string {
		parts := make([]string, 0, len(pairs))
		for _, p := range pairs {
			if len(p) == 2 {
				parts = append(parts, url.QueryEscape(p[0])+"="+url.QueryEscape(p[1]))
			}
		}
		return strings.Join(parts, "&")
	})
	h.define("parseURL", func(s, base string) map[string]any {
		u, err := url.Parse(s)
		if err == nil && base != "" {
			var b *url.URL
			if b, err = url.Parse(base); err == nil {
				u = b.ResolveReference(u)
			}
		}
		if err != nil || u.Scheme == "" || u.Host == "" {
			panic(vm.NewTypeError("Invalid URL: %q", s))
		}
		search := ""
		if u.RawQuery != "" {
			search = "?" + u.RawQuery
		}
		hash := ""
		if u.Fragment != "" {
			hash = "#" + u.EscapedFragment()
		}
		path := u.EscapedPath()
		if path == "" {
			path = "/"
		}
		return map[string]any{
			"href": u.Scheme + "://" + u.Host + path + search + hash, "protocol": u.Scheme + ":",
			"host": u.Host, "hostname": u.Hostname(), "port": u.Port(), "pathname": path,
			"search": search, "hash": hash, "origin": u.Scheme + "://" + u.Host,
		}
	})
	h.define("log", func(level, msg string) {
		l := in.reg.logger.With("class", in.class, "object", in.objectName(), "version", in.version)
		switch level {
		case "debug":
			l.Debug(msg)
		case "warn":
			l.Warn(msg)
		case "error":
			l.Error(msg)
		default:
			l.Info(msg)
		}
	})
	h.define("randomUUID", func() string {
		var b [16]byte
		in.fill(b[:])
		b[6] = b[6]&0x0f | 0x40
		b[8] = b[8]&0x3f | 0x80
		x := hex.EncodeToString(b[:])
		return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:]
	})
	h.define("fillRandom", func(v goja.Value) {
		b, ok := v.Export().([]byte)
		if !ok {
			// Any integer typed array: fill its bytes.
			o := v.ToObject(vm)
			buf, ok := o.Get("buffer").Export().(goja.ArrayBuffer)
			if !ok {
				panic(vm.NewTypeError("getRandomValues takes an integer typed array"))
			}
			off, n := int(o.Get("byteOffset").ToInteger()), int(o.Get("byteLength").ToInteger())
			b = buf.Bytes()[off : off+n]
		}
		if len(b) > 65536 {
			panic(vm.NewTypeError("getRandomValues: at most 65536 bytes"))
		}
		in.fill(b)
	})
	h.define("clone", func(v goja.Value) goja.Value {
		b, err := encodeValue(vm, v)
		if err != nil {
			in.throw(err)
		}
		out, err := decodeValue(vm, b)
		if err != nil {
			in.throw(err)
		}
		return out
	})
	h.define("newClientSocket", func() *goja.Object {
		o := vm.NewObject()
		o.Set("__client", true)
		return o
	})
	h.define("newServerSocket", func() *goja.Object { return in.socketObject(0) })
	return h.obj
}

func (in *instance) fill(b []byte) {
	if in.rng == nil {
		in.throw(fmt.Errorf("randomness used outside a turn"))
	}
	for i := 0; i < len(b); i += 8 {
		x := in.rng.Uint64()
		for j := 0; j < 8 && i+j < len(b); j++ {
			b[i+j] = byte(x >> (8 * j))
		}
	}
}

func (in *instance) objectName() string {
	if in.name != "" {
		return in.name
	}
	return in.id
}

func (in *instance) ctxObject() *goja.Object {
	vm := in.vm
	ctx := newLazy(vm)
	id := vm.NewObject()
	id.Set("name", in.name)
	if in.name == "" {
		id.Set("name", goja.Undefined())
	}
	idHex := in.id
	id.Set("toString", func() string { return idHex })
	id.Set("equals", func(o goja.Value) bool { return o != nil && o.String() == idHex })
	ctx.define("id", id)
	ctx.define("storage", getterFunc(func() goja.Value {
		if in.storage == nil {
			in.storage = in.storageObject(in.store)
		}
		return in.storage
	}))
	ctx.define("outbox", getterFunc(func() goja.Value {
		if in.outbox == nil {
			in.outbox = in.outboxObject()
		}
		return in.outbox
	}))
	ctx.define("blockConcurrencyWhile", func(fn goja.Callable) goja.Value {
		// Turns of one object never overlap, so this only runs fn.
		v, err := fn(goja.Undefined())
		if err != nil {
			panic(err)
		}
		return v
	})
	ctx.define("waitUntil", func(goja.Value) {})
	ctx.define("acceptWebSocket", func(ws *goja.Object, tags []string) {
		in.acceptSocket(ws, tags)
	})
	ctx.define("getWebSockets", func(call goja.FunctionCall) goja.Value {
		tag := ""
		if len(call.Arguments) > 0 && !goja.IsUndefined(call.Arguments[0]) {
			tag = call.Arguments[0].String()
		}
		return vm.ToValue(in.getSockets(tag))
	})
	ctx.define("getTags", func(ws *goja.Object) []string {
		s := in.socketHandle(ws)
		if s == nil {
			return nil
		}
		return s.Tags()
	})
	ctx.define("setWebSocketAutoResponse", func(call goja.FunctionCall) goja.Value {
		if in.c == nil {
			return goja.Undefined()
		}
		req, resp := "", ""
		if len(call.Arguments) > 0 && !goja.IsUndefined(call.Arguments[0]) {
			o := call.Arguments[0].ToObject(vm)
			req, resp = o.Get("request").String(), o.Get("response").String()
		}
		if err := in.c.SetAutoResponse(req, resp); err != nil {
			in.throw(err)
		}
		return goja.Undefined()
	})
	ctx.define("getWebSocketAutoResponseTimestamp", func(ws *goja.Object) goja.Value {
		s := in.socketHandle(ws)
		if s == nil || s.AutoResponseAt().IsZero() {
			return goja.Null()
		}
		v, _ := vm.New(vm.Get("Date"), vm.ToValue(s.AutoResponseAt().UnixMilli()))
		return v
	})
	return ctx.obj
}

// storageObject is ctx.storage (and a transaction's txn) over the store
// get returns.
func (in *instance) storageObject(get func() store) *goja.Object {
	vm := in.vm
	s := newLazy(vm)
	key := func(v goja.Value) string {
		if v == nil || goja.IsUndefined(v) {
			in.throw(fmt.Errorf("%w: a key is required", objects.ErrInvalidKey))
		}
		return v.String()
	}
	keys := func(v goja.Value) ([]string, bool) {
		o, ok := v.(*goja.Object)
		if !ok || o.ClassName() != "Array" {
			return nil, false
		}
		n := int(o.Get("length").ToInteger())
		out := make([]string, n)
		for i := range out {
			out[i] = key(o.Get(fmt.Sprint(i)))
		}
		return out, true
	}
	newMap := func() (*goja.Object, goja.Callable) {
		m, _ := vm.New(vm.Get("Map"))
		set, _ := goja.AssertFunction(m.Get("set"))
		return m, set
	}
	s.define("get", func(k goja.Value) goja.Value {
		st := get()
		if ks, ok := keys(k); ok {
			m, set := newMap()
			for _, k := range ks {
				b, found, err := st.Get(k)
				if err != nil {
					return in.rejected(err)
				}
				if found {
					v, err := decodeValue(vm, b)
					if err != nil {
						return in.rejected(err)
					}
					set(m, vm.ToValue(k), v)
				}
			}
			return in.resolved(m)
		}
		b, found, err := st.Get(key(k))
		if err != nil {
			return in.rejected(err)
		}
		if !found {
			return in.resolved(goja.Undefined())
		}
		v, err := decodeValue(vm, b)
		if err != nil {
			return in.rejected(err)
		}
		return in.resolved(v)
	})
	s.define("put", func(k, v goja.Value) goja.Value {
		st := get()
		if o, ok := k.(*goja.Object); ok && o.ClassName() == "Object" && (v == nil || goja.IsUndefined(v)) {
			for _, name := range o.Keys() {
				b, err := encodeValue(vm, o.Get(name))
				if err != nil {
					return in.rejected(fmt.Errorf("%w: put %q: %v", objects.ErrBadInput, name, err))
				}
				if err := st.Put(name, b); err != nil {
					return in.rejected(err)
				}
			}
			return in.resolved(goja.Undefined())
		}
		b, err := encodeValue(vm, v)
		if err != nil {
			return in.rejected(fmt.Errorf("%w: put %q: %v", objects.ErrBadInput, key(k), err))
		}
		if err := st.Put(key(k), b); err != nil {
			return in.rejected(err)
		}
		return in.resolved(goja.Undefined())
	})
	s.define("delete", func(k goja.Value) goja.Value {
		st := get()
		if ks, ok := keys(k); ok {
			n := 0
			for _, k := range ks {
				ok, err := st.Delete(k)
				if err != nil {
					return in.rejected(err)
				}
				if ok {
					n++
				}
			}
			return in.resolved(vm.ToValue(n))
		}
		ok, err := st.Delete(key(k))
		if err != nil {
			return in.rejected(err)
		}
		return in.resolved(vm.ToValue(ok))
	})
	s.define("deleteAll", func() goja.Value {
		if err := get().DeleteAll(); err != nil {
			return in.rejected(err)
		}
		return in.resolved(goja.Undefined())
	})
	s.define("list", func(call goja.FunctionCall) goja.Value {
		var opts objects.ListOptions
		if len(call.Arguments) > 0 && !goja.IsUndefined(call.Arguments[0]) && !goja.IsNull(call.Arguments[0]) {
			o := call.Arguments[0].ToObject(vm)
			str := func(n string) string {
				if v := o.Get(n); v != nil && !goja.IsUndefined(v) {
					return v.String()
				}
				return ""
			}
			opts.Prefix, opts.Start, opts.End = str("prefix"), str("start"), str("end")
			if sa := str("startAfter"); sa != "" {
				opts.Start = sa + "\x00"
			}
			if v := o.Get("reverse"); v != nil {
				opts.Reverse = v.ToBoolean()
			}
			if v := o.Get("limit"); v != nil && !goja.IsUndefined(v) {
				opts.Limit = int(v.ToInteger())
				if opts.Limit <= 0 {
					return in.rejected(fmt.Errorf("%w: list limit must be positive", objects.ErrBadInput))
				}
			}
		}
		kvs, err := get().List(opts)
		if err != nil {
			return in.rejected(err)
		}
		m, set := newMap()
		for _, kv := range kvs {
			v, err := decodeValue(vm, kv.Value)
			if err != nil {
				return in.rejected(err)
			}
			set(m, vm.ToValue(kv.Key), v)
		}
		return in.resolved(m)
	})
	s.define("getAlarm", func() goja.Value {
		at, ok, err := get().GetAlarm()
		if err != nil {
			return in.rejected(err)
		}
		if !ok {
			return in.resolved(goja.Null())
		}
		return in.resolved(vm.ToValue(at.UnixMilli()))
	})
	s.define("setAlarm", func(v goja.Value) goja.Value {
		var at time.Time
		switch x := v.Export().(type) {
		case time.Time:
			at = x
		case int64:
			at = time.UnixMilli(x)
		case float64:
			at = time.UnixMilli(int64(x))
		default:
			return in.rejected(fmt.Errorf("%w: setAlarm takes a Date or milliseconds since the epoch", objects.ErrBadInput))
		}
		if err := get().SetAlarm(at); err != nil {
			return in.rejected(err)
		}
		return in.resolved(goja.Undefined())
	})
	s.define("deleteAlarm", func() goja.Value {
		if _, err := get().DeleteAlarm(); err != nil {
			return in.rejected(err)
		}
		return in.resolved(goja.Undefined())
	})
	s.define("sync", func() goja.Value { return in.resolved(goja.Undefined()) })
	s.define("transaction", func(fn goja.Callable) goja.Value {
		parent := get()
		tx, err := parent.Begin()
		if err != nil {
			return in.rejected(err)
		}
		done := false
		txn := in.storageObject(func() store {
			if done {
				in.throw(fmt.Errorf("transaction used after it ended"))
			}
			return tx
		})
		rolledBack := false
		txn.Set("rollback", func() { rolledBack = true })
		in.txDepth++
		out, err := fn(goja.Undefined(), txn)
		if err != nil {
			done = true
			in.txDepth--
			parent.Rollback(tx) // its writes and SQL rows go; the throw is the error
			panic(err)
		}
		p, resolve, reject := vm.NewPromise()
		settle := func(v goja.Value, failed bool) {
			done = true
			in.txDepth--
			if failed || rolledBack {
				if err := parent.Rollback(tx); err != nil && !failed {
					reject(vm.NewGoError(err))
					return
				}
				if failed {
					reject(v)
					return
				}
				resolve(v)
				return
			}
			if err := parent.Commit(tx); err != nil {
				reject(vm.NewGoError(err))
				return
			}
			resolve(v)
		}
		if q, ok := promiseOf(out); ok {
			then, _ := goja.AssertFunction(vm.ToValue(q).ToObject(vm).Get("then"))
			then(vm.ToValue(q),
				vm.ToValue(func(v goja.Value) { settle(v, false) }),
				vm.ToValue(func(v goja.Value) { settle(v, true) }))
		} else {
			settle(out, false)
		}
		return vm.ToValue(p)
	})
	s.define("sql", getterFunc(func() goja.Value {
		if in.sqlObj == nil {
			in.sqlObj = in.sqlObject()
		}
		return in.sqlObj
	}))
	return s.obj
}

// --- WebSockets ---

// socketObject is the JavaScript WebSocket for socket id (0: a server end
// of a WebSocketPair not accepted yet).
func (in *instance) socketObject(id objects.SocketID) *goja.Object {
	if o, ok := in.sockets[id]; ok && id != 0 {
		return o
	}
	vm := in.vm
	o := vm.NewObject()
	o.Set("__id", int64(id))
	handle := func() *objects.WebSocket {
		s := in.socketHandle(o)
		if s == nil {
			in.throw(fmt.Errorf("%w: WebSocket not accepted or closed", objects.ErrSocketClosed))
		}
		return s
	}
	o.Set("send", func(v goja.Value) {
		if in.c == nil {
			in.sockOut = append(in.sockOut, v.String())
			return
		}
		s := handle()
		var err error
		if b, ok := v.Export().([]byte); ok {
			err = s.SendBytes(b)
		} else if ab, ok := v.Export().(goja.ArrayBuffer); ok {
			err = s.SendBytes(ab.Bytes())
		} else {
			str := v.String()
			if !utf8.ValidString(str) {
				str = strings.ToValidUTF8(str, "\uFFFD")
			}
			err = s.Send(str)
		}
		if err != nil {
			in.throw(err)
		}
	})
	o.Set("close", func(call goja.FunctionCall) goja.Value {
		if in.c == nil {
			return goja.Undefined()
		}
		code, reason := 1000, ""
		if len(call.Arguments) > 0 && !goja.IsUndefined(call.Arguments[0]) {
			code = int(call.Arguments[0].ToInteger())
		}
		if len(call.Arguments) > 1 && !goja.IsUndefined(call.Arguments[1]) {
			reason = call.Arguments[1].String()
		}
		s := in.socketHandle(o)
		if s == nil {
			return goja.Undefined() // closed already (as in webSocketClose): nothing to do, as in Workers
		}
		if err := s.Close(code, reason); err != nil && !errors.Is(err, objects.ErrSocketClosed) {
			in.throw(err)
		}
		return goja.Undefined()
	})
	o.Set("serializeAttachment", func(v goja.Value) {
		b, err := encodeValue(vm, v)
		if err != nil {
			in.throw(fmt.Errorf("%w: attachment: %v", objects.ErrBadInput, err))
		}
		if in.c == nil {
			return
		}
		if err := handle().SetAttachment(b); err != nil {
			in.throw(err)
		}
	})
	o.Set("deserializeAttachment", func() goja.Value {
		if in.c == nil {
			return goja.Null()
		}
		b := handle().Attachment()
		if len(b) == 0 {
			return goja.Null()
		}
		v, err := decodeValue(vm, b)
		if err != nil {
			in.throw(err)
		}
		return v
	})
	o.Set("readyState", 1)
	if id != 0 {
		in.sockets[id] = o
	}
	return o
}

func socketID(o *goja.Object) objects.SocketID {
	v := o.Get("__id")
	if v == nil {
		return 0
	}
	return objects.SocketID(v.ToInteger())
}

// socketHandle finds the turn's handle of a JavaScript WebSocket.
func (in *instance) socketHandle(o *goja.Object) *objects.WebSocket {
	id := socketID(o)
	if id == 0 || in.c == nil {
		return nil
	}
	if in.conn != nil && in.conn.ID() == id {
		return in.conn
	}
	if in.turnSock == nil {
		in.turnSock = map[objects.SocketID]*objects.WebSocket{}
		for _, s := range in.c.Sockets("") {
			in.turnSock[s.ID()] = s
		}
	}
	return in.turnSock[id]
}

func (in *instance) acceptSocket(ws *goja.Object, tags []string) {
	if in.conn == nil || in.c == nil {
		in.throw(fmt.Errorf("acceptWebSocket: only during a WebSocket upgrade (a fetch with Upgrade: websocket)"))
	}
	if in.accepted {
		in.throw(fmt.Errorf("acceptWebSocket: this upgrade already accepted a socket"))
	}
	if err := in.conn.SetTags(tags...); err != nil {
		in.throw(err)
	}
	id := in.conn.ID()
	ws.Set("__id", int64(id))
	in.sockets[id] = ws
	in.accepted = true
}

func (in *instance) getSockets(tag string) []goja.Value {
	if in.c == nil {
		return nil
	}
	ss := in.c.Sockets(tag)
	out := make([]goja.Value, 0, len(ss))
	if in.turnSock == nil {
		in.turnSock = map[objects.SocketID]*objects.WebSocket{}
	}
	for _, s := range ss {
		in.turnSock[s.ID()] = s
		out = append(out, in.socketObject(s.ID()))
	}
	return out
}
