package objects

import (
	"fmt"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"time"
	"unicode"
)

// Class is a registered object type: a name, a constructor and the RPC
// methods found on the type by reflection, once, at definition.
type Class struct {
	name    string
	newInst func() any
	typ     reflect.Type
	methods map[string]*method // by wire name ("increment", "delete-all")
	fetches bool               // implements Fetcher
	// alarmRetries overrides DefaultAlarmRetries (WithAlarmRetries).
	alarmRetries *int
	// idemWindow overrides DefaultIdempotencyWindow (WithIdempotencyWindow).
	idemWindow time.Duration
	dynamic    bool // DefineDynamic: methods are the instance's (dynamic.go)
	// sqlSizeMax overrides sqlstore.DefaultSizeMax (WithSQLSizeMax).
	sqlSizeMax int64
}

// Name is the class name used in URLs and subjects.
func (c *Class) Name() string { return c.name }

// Methods lists the wire names of the class's RPC methods, sorted.
func (c *Class) Methods() []string {
	names := make([]string, 0, len(c.methods))
	for n := range c.methods {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

type method struct {
	name  string // wire name
	impl  reflect.Value
	in    reflect.Type // nil when the method takes no input
	out   reflect.Type // nil when the method returns only error
	gname string       // Go name, for errors
}

// Optional interfaces a class type may implement besides its RPC methods.
type (
	// Initer runs once per activation before any other turn, like a Durable
	// Object constructor inside blockConcurrencyWhile. Its writes are a turn.
	Initer interface{ Init(ctx *Ctx) error }
	// Fetcher handles raw HTTP at /v1/objects/{class}/{name}/fetch/{path...}.
	// The response is buffered and leaves only after the turn's writes are
	// durable.
	Fetcher interface {
		Fetch(ctx *Ctx, w http.ResponseWriter, r *http.Request)
	}
)

// Entry points that are not RPC methods even when their shape would fit.
var reservedMethods = map[string]bool{
	"Init": true, "Fetch": true, "Alarm": true,
	"WebSocketConnect": true, "WebSocketMessage": true, "WebSocketClose": true, "WebSocketError": true,
}

var (
	ctxType   = reflect.TypeFor[*Ctx]()
	errorType = reflect.TypeFor[error]()
)

// Define registers type T as class name. newT makes a fresh instance for
// each activation; its fields are the object's in-memory state and live as
// long as the activation. Every exported method of *T shaped
//
//	func (t *T) Name(ctx *objects.Ctx, in In) (Out, error)
//	func (t *T) Name(ctx *objects.Ctx) (Out, error)
//	func (t *T) Name(ctx *objects.Ctx, in In) error
//	func (t *T) Name(ctx *objects.Ctx) error
//
// becomes an RPC method, called as its name in kebab case (DeleteAll is
// "delete-all"). Other methods are ignored, as net/rpc does. Define panics
// on an invalid class name or a type with no entry point at all: both are
// programming errors found at start-up.
func Define[T any](name string, newT func() *T) *Class {
	if err := ValidateClassName(name); err != nil {
		panic(fmt.Sprintf("objects.Define: %v", err))
	}
	c := &Class{
		name:    name,
		newInst: func() any { return newT() },
		typ:     reflect.TypeFor[*T](),
		methods: map[string]*method{},
	}
	for i := 0; i < c.typ.NumMethod(); i++ {
		m := c.typ.Method(i)
		if reservedMethods[m.Name] {
			continue
		}
		if md, ok := rpcMethod(m); ok {
			c.methods[md.name] = md
		}
	}
	_, c.fetches = any(new(T)).(Fetcher)
	if len(c.methods) == 0 && !c.fetches && !acceptsSockets(c.typ) {
		panic(fmt.Sprintf("objects.Define(%q): %v has no RPC method, no Fetch and no WebSocket handler", name, c.typ))
	}
	return c
}

func rpcMethod(m reflect.Method) (*method, bool) {
	t := m.Type // includes the receiver
	if t.NumIn() < 2 || t.NumIn() > 3 || t.In(1) != ctxType {
		return nil, false
	}
	md := &method{name: kebab(m.Name), gname: m.Name, impl: m.Func}
	if t.NumIn() == 3 {
		md.in = t.In(2)
	}
	switch {
	case t.NumOut() == 1 && t.Out(0) == errorType:
	case t.NumOut() == 2 && t.Out(1) == errorType:
		md.out = t.Out(0)
	default:
		return nil, false
	}
	return md, true
}

// kebab turns a Go method name into its wire name: DeleteAll → delete-all,
// GetHTTPStatus → get-http-status.
func kebab(s string) string {
	var b strings.Builder
	rs := []rune(s)
	for i, r := range rs {
		if unicode.IsUpper(r) {
			prevLower := i > 0 && !unicode.IsUpper(rs[i-1])
			nextLower := i > 0 && i+1 < len(rs) && unicode.IsLower(rs[i+1]) && unicode.IsUpper(rs[i-1])
			if prevLower || nextLower {
				b.WriteByte('-')
			}
			b.WriteRune(unicode.ToLower(r))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// call runs the method on inst. in is a pointer to the decoded input (nil
// when the method takes none). A panic is not recovered here: the turn
// runner recovers it and resets the activation.
func (m *method) call(inst any, ctx *Ctx, in reflect.Value) (out any, err error) {
	args := []reflect.Value{reflect.ValueOf(inst), reflect.ValueOf(ctx)}
	if m.in != nil {
		args = append(args, in.Elem())
	}
	res := m.impl.Call(args)
	last := res[len(res)-1]
	if !last.IsNil() {
		err = last.Interface().(error)
	}
	if m.out != nil {
		out = res[0].Interface()
	}
	return out, err
}
