package jsclass

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/dop251/goja"
	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/objects"
)

// this.env: every class of the node, built in or deployed, is a binding
// named after it in upper case with "-" as "_" (class "chat-room" is
// env.CHAT_ROOM). A binding is a Durable Object namespace: idFromName,
// idFromString, newUniqueId, get(id), getByName(name). A stub's methods
// call the object's RPC methods through objects.Stub.Call (a commit point,
// with call_cycle and call_depth refused as for Go classes) and return
// Promises of the callee's JSON answer. Each answer is recorded in the
// turn's CodeRecord, so replay gives it back instead of calling.

// bindingName is what an env property must look like to be a binding.
var bindingName = regexp.MustCompile(`^[A-Z][A-Z0-9_]{0,62}$`)

// bindingClass is the class an env binding names ("" if none).
func bindingClass(prop string) string {
	if !bindingName.MatchString(prop) {
		return ""
	}
	c := strings.ReplaceAll(strings.ToLower(prop), "_", "-")
	if objects.ValidateClassName(c) != nil {
		return ""
	}
	return c
}

func (in *instance) envObject() goja.Value {
	vm := in.vm
	target := vm.NewObject()
	spaces := map[string]goja.Value{}
	p := vm.NewProxy(target, &goja.ProxyTrapConfig{
		Get: func(t *goja.Object, prop string, recv goja.Value) goja.Value {
			class := bindingClass(prop)
			if class == "" {
				return goja.Undefined()
			}
			if ns, ok := spaces[prop]; ok {
				return ns
			}
			ns := in.namespace(class)
			spaces[prop] = ns
			return ns
		},
		Has: func(t *goja.Object, prop string) bool { return bindingClass(prop) != "" },
	})
	return vm.ToValue(p)
}

// namespace is one binding: the objects of class.
func (in *instance) namespace(class string) goja.Value {
	vm := in.vm
	ns := newLazy(vm)
	ns.define("idFromName", func(name string) goja.Value {
		if err := objects.ValidateName(name); err != nil {
			in.throw(err)
		}
		return in.idObject(class, objects.IDFromName(class, name), name)
	})
	ns.define("idFromString", func(s string) goja.Value {
		id, err := objects.ParseID(s)
		if err != nil {
			in.throw(err)
		}
		return in.idObject(class, id, "")
	})
	ns.define("newUniqueId", func() goja.Value {
		var id objects.ID
		in.fill(id[:]) // from the turn's seed: replay makes the same id
		return in.idObject(class, id, "")
	})
	ns.define("get", func(v goja.Value) goja.Value {
		o, ok := v.(*goja.Object)
		var hexID string
		if ok {
			if h := o.Get("__id"); h != nil && !goja.IsUndefined(h) {
				hexID = h.String()
			}
		}
		if hexID == "" {
			in.throw(fmt.Errorf("%w: get takes an id from idFromName, idFromString or newUniqueId", objects.ErrBadInput))
		}
		if c := o.Get("__class").String(); c != class {
			in.throw(fmt.Errorf("%w: an id of class %q used with the binding of %q", objects.ErrBadInput, c, class))
		}
		id, _ := objects.ParseID(hexID)
		name := ""
		if n := o.Get("name"); n != nil && !goja.IsUndefined(n) {
			name = n.String()
		}
		return in.stubObject(class, id, name)
	})
	ns.define("getByName", func(name string) goja.Value {
		if err := objects.ValidateName(name); err != nil {
			in.throw(err)
		}
		return in.stubObject(class, objects.IDFromName(class, name), name)
	})
	return ns.obj
}

// idObject is a DurableObjectId.
func (in *instance) idObject(class string, id objects.ID, name string) goja.Value {
	vm := in.vm
	o := vm.NewObject()
	h := id.String()
	o.Set("__id", h)
	o.Set("__class", class)
	if name != "" {
		o.Set("name", name)
	}
	o.Set("toString", func() string { return h })
	o.Set("equals", func(v goja.Value) bool { return v != nil && !goja.IsUndefined(v) && v.String() == h })
	return o
}

// stubObject is a DurableObjectStub: any property is an RPC method.
func (in *instance) stubObject(class string, id objects.ID, name string) goja.Value {
	vm := in.vm
	idObj := in.idObject(class, id, name)
	methods := map[string]goja.Value{}
	target := vm.NewObject()
	p := vm.NewProxy(target, &goja.ProxyTrapConfig{
		Get: func(t *goja.Object, prop string, recv goja.Value) goja.Value {
			switch prop {
			case "id":
				return idObj
			case "name":
				if name == "" {
					return goja.Undefined()
				}
				return vm.ToValue(name)
			case "then", "toJSON", "constructor", "valueOf", "toString":
				return goja.Undefined() // not RPC: a stub is not a thenable
			case "fetch":
				if f, ok := methods[prop]; ok {
					return f
				}
				f := vm.ToValue(func(call goja.FunctionCall) goja.Value {
					return in.fetchObject(class, id, name, call.Arguments)
				})
				methods[prop] = f
				return f
			}
			if f, ok := methods[prop]; ok {
				return f
			}
			f := vm.ToValue(func(call goja.FunctionCall) goja.Value {
				return in.callObject(class, id, name, prop, call.Arguments)
			})
			methods[prop] = f
			return f
		},
		// The stub's target, for ctx.outbox: under a symbol only Go holds,
		// so that every string property stays the target's RPC method.
		GetSym: func(t *goja.Object, prop *goja.Symbol, recv goja.Value) goja.Value {
			if prop == stubKey {
				return vm.ToValue(&stubTarget{class: class, id: id, name: name})
			}
			return t.GetSymbol(prop)
		},
	})
	return vm.ToValue(p)
}

// stubKey is the symbol under which a stub gives its target to
// ctx.outbox. Only Go holds it (a symbol belongs to no runtime), so no
// class can read or forge it.
var stubKey = goja.NewSymbol("strata.stub")

// stubTarget is the object a stub calls.
type stubTarget struct {
	class string
	id    objects.ID
	name  string
}

// outboxObject is ctx.outbox: durable messages to the objects stubs name.
// They are not methods of the stub, which would take names (send, say)
// that a target's own RPC methods may have.
func (in *instance) outboxObject() goja.Value {
	o := in.vm.NewObject()
	o.Set("send", func(call goja.FunctionCall) goja.Value {
		return in.sendMessage(in.outboxTarget(call, "send(stub, method, ...args)"), call.Arguments[1:], false)
	})
	o.Set("sendWithReply", func(call goja.FunctionCall) goja.Value {
		return in.sendMessage(in.outboxTarget(call, "sendWithReply(stub, method, args, replyMethod)"), call.Arguments[1:], true)
	})
	return o
}

// outboxTarget is the object the stub in call's first argument calls; it
// throws when that is not a stub.
func (in *instance) outboxTarget(call goja.FunctionCall, usage string) *stubTarget {
	if o, ok := call.Argument(0).(*goja.Object); ok {
		if v := o.GetSymbol(stubKey); v != nil {
			if t, ok := v.Export().(*stubTarget); ok {
				return t
			}
		}
	}
	in.throw(fmt.Errorf("%w: ctx.outbox.%s: the first argument is a stub (this.env.CLASS.get(id) or getByName(name))", objects.ErrBadInput, usage))
	return nil
}

// callObject calls method of the object and returns a Promise of its
// answer.
func (in *instance) callObject(class string, id objects.ID, name, method string, args []goja.Value) goja.Value {
	body, err := in.encodeArgs(class, method, args)
	if err != nil {
		return in.rejected(err)
	}
	var ans log.CodeCall
	if in.replay {
		ans = in.replayAnswer(class, method, body)
	} else {
		if in.c == nil {
			in.throw(errors.New("calls to other objects only within a turn"))
		}
		if in.txDepth > 0 {
			return in.rejected(fmt.Errorf("%w: %s.%s", objects.ErrCallInTransaction, class, method))
		}
		ans = in.liveCall(class, id, name, method, body)
	}
	if ans.Code == "" {
		if len(ans.Output) == 0 {
			return in.resolved(goja.Undefined())
		}
		v, err := in.parseJSON(ans.Output)
		if err != nil {
			return in.rejected(fmt.Errorf("the answer of %s.%s: %w", class, method, err))
		}
		return in.resolved(v)
	}
	return in.rejectedCall(ans)
}

// encodeArgs is the JSON input of a call or message to a method of class:
// a JavaScript method takes positional arguments (the array), a Go
// class's method one input (the single argument; none is no input).
func (in *instance) encodeArgs(class, method string, args []goja.Value) ([]byte, error) {
	vm := in.vm
	arr := make([]any, len(args))
	for i, a := range args {
		arr[i] = a
	}
	_, deployed := in.reg.cfg.Classes.Latest(class)
	switch {
	case deployed:
		b, err := in.toJSON(vm.NewArray(arr...))
		if err != nil {
			return nil, fmt.Errorf("%w: arguments of %s.%s: %v", objects.ErrBadInput, class, method, err)
		}
		return b, nil
	case len(args) == 1:
		b, err := in.toJSON(args[0])
		if err != nil {
			return nil, fmt.Errorf("%w: argument of %s.%s: %v", objects.ErrBadInput, class, method, err)
		}
		return b, nil
	case len(args) > 1:
		return nil, fmt.Errorf("%w: %s.%s: a Go class's method takes one argument, not %d", objects.ErrBadInput, class, method, len(args))
	}
	return nil, nil
}

// sendMessage is ctx.outbox.send(stub, method, ...args) and
// ctx.outbox.sendWithReply(stub, method, args, replyMethod), given the
// stub's target and the arguments after the stub: a durable message (objects.Stub.Send,
// SendWithReply), recorded in the turn's event and delivered once that
// event is acknowledged. It returns nothing; bad input throws, and the
// turn it fails sends nothing. A reply method must be one of this class's
// RPC methods; it gets the objects.Reply ({target, method, out, error}) as
// its one argument. In a replay nothing is sent: the message is kept to be
// compared with the recorded ones.
func (in *instance) sendMessage(to *stubTarget, call []goja.Value, withReply bool) goja.Value {
	argAt := goja.FunctionCall{Arguments: call}.Argument
	if goja.IsUndefined(argAt(0)) || goja.IsNull(argAt(0)) {
		in.throw(fmt.Errorf("%w: send: a method name is required", objects.ErrBadInput))
	}
	class, id, name := to.class, to.id, to.name
	method := argAt(0).String()
	var args []goja.Value
	if len(call) > 1 {
		args = call[1:]
	}
	reply := ""
	if withReply {
		args = nil
		switch a := argAt(1); {
		case goja.IsUndefined(a) || goja.IsNull(a):
		default:
			o, ok := a.(*goja.Object)
			if !ok || o.ClassName() != "Array" {
				in.throw(fmt.Errorf("%w: sendWithReply(method, args, replyMethod): args is an array", objects.ErrBadInput))
			}
			for i, n := 0, int(o.Get("length").ToInteger()); i < n; i++ {
				args = append(args, o.Get(fmt.Sprint(i)))
			}
		}
		if r := argAt(2); !goja.IsUndefined(r) && !goja.IsNull(r) {
			reply = r.String()
		}
		if in.obj == nil {
			in.throw(fmt.Errorf("%w: sendWithReply in the constructor (the reply method is not known yet): send it from a method", objects.ErrBadInput))
		}
		if _, ok := goja.AssertFunction(in.obj.Get(reply)); !ok || entryPoints[reply] || strings.HasPrefix(reply, "_") {
			in.throw(fmt.Errorf("%w: reply method: %s has no RPC method %q", objects.ErrUnknownMethod, in.class, reply))
		}
	}
	body, err := in.encodeArgs(class, method, args)
	if err != nil {
		in.throw(err)
	}
	if in.replay {
		if body != nil {
			body, _ = json.Marshal(json.RawMessage(body)) // as the runtime's codec encodes it
		}
		in.replaySends = append(in.replaySends, log.Message{Class: class, ID: id, Name: name, Method: method, Body: body, Reply: reply})
		return goja.Undefined()
	}
	if in.c == nil {
		in.throw(errors.New("messages to other objects only within a turn"))
	}
	stub := in.c.ObjectByID(class, id)
	if name != "" {
		stub = in.c.Object(class, name)
	}
	var arg any
	if body != nil {
		arg = json.RawMessage(body)
	}
	if withReply {
		err = stub.SendWithReply(method, arg, reply)
	} else {
		err = stub.Send(method, arg)
	}
	if err != nil {
		in.throw(err)
	}
	return goja.Undefined()
}

// liveCall makes the call and records its answer.
func (in *instance) liveCall(class string, id objects.ID, name, method string, body []byte) log.CodeCall {
	return in.recordedCall(class, id, name, body, func(stub *objects.Stub) ([]byte, error) {
		var arg any
		if body != nil {
			arg = json.RawMessage(body)
		}
		var out json.RawMessage
		err := stub.Call(in.c, method, arg, &out)
		return out, err
	})
}

// recordedCall runs do (a call or a fetch, whose input is body) on a stub
// of the object, with the turn's clock stopped, and records its answer.
func (in *instance) recordedCall(class string, id objects.ID, name string, body []byte, do func(*objects.Stub) ([]byte, error)) log.CodeCall {
	// The writes so far are staged by the call (a commit point) with the
	// turn's record marked as continued: replay joins the parts.
	in.c.RecordCode(in.codeRecord(nil, true))
	stub := in.c.ObjectByID(class, id)
	if name != "" {
		stub = in.c.Object(class, name)
	}
	in.pauseWatch()
	out, err := do(stub)
	in.resumeWatch()
	sum := sha256.Sum256(body)
	ans := log.CodeCall{InputHash: sum[:]}
	if err != nil {
		ans.Code, ans.Refused = objects.CallErrorCode(err), !stub.Left()
		ans.Message = err.Error()
		if len(ans.Message) > log.CodeCallMessageMax {
			ans.Message = strings.ToValidUTF8(ans.Message[:log.CodeCallMessageMax], "")
		}
		var ce *objects.ClientError
		if errors.As(err, &ce) {
			ans.Status = ce.Status
		}
		in.answers = append(in.answers, ans)
		in.callErr = append(in.callErr, err)
		return ans
	}
	ans.Output = out
	kept := ans
	if in.keptBytes+len(out) > log.CodeCallsBytesMax || len(out) > log.CodeInputBytesMax {
		h := sha256.Sum256(out) // too much to keep: replay skips the turn
		kept.Output, kept.OutputBytes, kept.OutputHash = nil, len(out), h[:]
	} else {
		in.keptBytes += len(out)
	}
	in.answers = append(in.answers, kept)
	in.callErr = append(in.callErr, nil)
	return ans
}

// rejectedCall is the rejected Promise of a failed call: an Error with the
// callee's message, its code ("call_cycle", "not_found", ...) and, for a
// refusal, its status. Uncaught, it fails the turn as the call's error.
func (in *instance) rejectedCall(ans log.CodeCall) goja.Value {
	var err error
	if n := len(in.callErr); !in.replay && n > 0 && in.callErr[n-1] != nil {
		err = in.callErr[n-1]
	} else if ans.Status != 0 {
		err = objects.Errorf(ans.Status, ans.Code, "%s", ans.Message)
	} else {
		err = errors.New(ans.Message)
	}
	e := in.vm.NewGoError(err)
	e.Set("code", ans.Code)
	if ans.Status != 0 {
		e.Set("status", ans.Status)
	}
	p, _, reject := in.vm.NewPromise()
	reject(e)
	return in.vm.ToValue(p)
}

// replayAnswer is the recorded answer of the turn's next call. The turn's
// recorded calls list only those that left: a refused answer has none.
func (in *instance) replayAnswer(class, method string, body []byte) log.CodeCall {
	i := in.callN
	in.callN++
	if i >= len(in.replayAnswers) {
		in.replayLines = append(in.replayLines, fmt.Sprintf("call %d: recorded none, new %s.%s", i+1, class, method))
		return log.CodeCall{Code: "not_recorded", Message: "replay: the recorded turn made no such call"}
	}
	ans := in.replayAnswers[i]
	if !ans.Refused {
		j := in.sentN
		in.sentN++
		if j >= len(in.replayCalls) {
			in.replayLines = append(in.replayLines, fmt.Sprintf("call %d: recorded none, new %s.%s", i+1, class, method))
			return log.CodeCall{Code: "not_recorded", Message: "replay: the recorded turn made no such call"}
		}
		if want := in.replayCalls[j]; want.Class != class || want.Method != method {
			in.replayLines = append(in.replayLines, fmt.Sprintf("call %d: recorded %s.%s, new %s.%s", i+1, want.Class, want.Method, class, method))
		}
	}
	if sum := sha256.Sum256(body); len(ans.InputHash) > 0 && !bytes.Equal(ans.InputHash, sum[:]) {
		in.replayLines = append(in.replayLines, fmt.Sprintf("call %d %s.%s: the new code's arguments differ (%s)", i+1, class, method, clip(body)))
	}
	if ans.OutputBytes > 0 {
		in.replaySkip = true // the answer was too large to keep
	}
	return ans
}

// fetchObject is stub.fetch(input, init): the object's fetch handler (a
// JavaScript fetch or a Go class's Fetch) gets the Request built as
// new Request(input, init) would be, and the Promise resolves to its
// Response. A URL without a scheme and host (a path) is taken as
// https://object/path. The answer is recorded as a call's (the response's
// status, headers and body), and replay gives it back.
func (in *instance) fetchObject(class string, id objects.ID, name string, args []goja.Value) goja.Value {
	vm := in.vm
	if err := in.defineGlobals([]string{"Headers", "Request", "Response"}); err != nil {
		return in.rejected(err)
	}
	if len(args) == 0 {
		return in.rejected(fmt.Errorf("%w: %s fetch: a request or URL is required", objects.ErrBadInput, class))
	}
	reqObj, err := vm.New(vm.Get("Request"), args...)
	if err != nil {
		return in.rejected(fmt.Errorf("%w: %s fetch: %v", objects.ErrBadInput, class, jsError(err)))
	}
	fi, err := in.requestInput(reqObj)
	if err != nil {
		return in.rejected(fmt.Errorf("%w: %s fetch: %v", objects.ErrBadInput, class, err))
	}
	input := mustJSON(fi)
	var ans log.CodeCall
	if in.replay {
		ans = in.replayAnswer(class, objects.FetchMethod, input)
	} else {
		if in.c == nil {
			in.throw(errors.New("calls to other objects only within a turn"))
		}
		if in.txDepth > 0 {
			return in.rejected(fmt.Errorf("%w: %s.fetch", objects.ErrCallInTransaction, class))
		}
		ans = in.recordedCall(class, id, name, input, func(stub *objects.Stub) ([]byte, error) {
			r, err := http.NewRequestWithContext(in.c, fi.Method, fi.URL, bytes.NewReader(fi.Body))
			if err != nil {
				return nil, fmt.Errorf("%w: fetch: %w", objects.ErrBadInput, err)
			}
			r.Header = fi.Header
			resp, err := stub.Fetch(in.c, r)
			if err != nil {
				return nil, err
			}
			return encodeFetchOutput(resp), nil
		})
	}
	if ans.Code != "" {
		return in.rejectedCall(ans)
	}
	var fo fetchOutput
	if err := json.Unmarshal(ans.Output, &fo); err != nil {
		return in.rejected(fmt.Errorf("the response of %s fetch: %w", class, err))
	}
	init := vm.NewObject()
	init.Set("status", fo.Status)
	h := vm.NewObject()
	for k, vs := range fo.Header {
		h.Set(k, strings.Join(vs, ", "))
	}
	init.Set("headers", h)
	var body goja.Value = goja.Null()
	if len(fo.Body) > 0 {
		body = jsBytes(vm, fo.Body)
	}
	resp, err := vm.New(vm.Get("Response"), body, init)
	if err != nil {
		return in.rejected(fmt.Errorf("the response of %s fetch: %v", class, jsError(err)))
	}
	return in.resolved(resp)
}

// requestInput reads a JavaScript Request as a fetch's input.
func (in *instance) requestInput(v *goja.Object) (fetchInput, error) {
	fi := fetchInput{Method: v.Get("method").String(), URL: v.Get("url").String(), Header: http.Header{}}
	u, err := url.Parse(fi.URL)
	switch {
	case err != nil:
		return fi, err
	case u.Scheme == "" && u.Host == "" && strings.HasPrefix(u.Path, "/"):
		u.Scheme, u.Host = "https", "object"
	case u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
		return fi, fmt.Errorf("URL %q is neither an http(s) URL nor a path", fi.URL)
	}
	fi.URL = u.String()
	hs := v.Get("headers").ToObject(in.vm)
	if forEach, ok := goja.AssertFunction(hs.Get("forEach")); ok {
		if _, err := forEach(hs, in.vm.ToValue(func(val, key goja.Value) {
			fi.Header.Add(key.String(), val.String())
		})); err != nil {
			return fi, jsError(err)
		}
	}
	if b := v.Get("_body"); b != nil && !goja.IsNull(b) && !goja.IsUndefined(b) {
		raw, ok := b.Export().([]byte)
		if !ok {
			return fi, errors.New("an unreadable body")
		}
		fi.Body = append([]byte(nil), raw...)
	}
	return fi, nil
}
