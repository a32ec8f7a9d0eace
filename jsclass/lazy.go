package jsclass

import (
	"slices"

	"github.com/dop251/goja"
)

// lazyObject is a JavaScript object whose properties are Go values made
// into JavaScript values on first read: the host API objects (ctx,
// ctx.storage, __host, …) have dozens of functions and an activation uses
// a few, and a goja function costs about ten allocations to make.
type lazyObject struct {
	vm    *goja.Runtime
	obj   *goja.Object
	names []string // in definition order
	raw   map[string]any
	vals  map[string]goja.Value
}

// getterFunc is a property computed on every read (an accessor).
type getterFunc func() goja.Value

func newLazy(vm *goja.Runtime) *lazyObject {
	o := &lazyObject{vm: vm, raw: map[string]any{}, vals: map[string]goja.Value{}}
	o.obj = vm.NewDynamicObject(o)
	return o
}

// define sets name to v, converted by goja's ToValue when first read.
func (o *lazyObject) define(name string, v any) {
	if !o.Has(name) {
		o.names = append(o.names, name)
	}
	delete(o.vals, name)
	o.raw[name] = v
}

func (o *lazyObject) Get(k string) goja.Value {
	if v, ok := o.vals[k]; ok {
		return v
	}
	r, ok := o.raw[k]
	if !ok {
		return nil
	}
	if g, ok := r.(getterFunc); ok {
		return g()
	}
	v := o.vm.ToValue(r)
	o.vals[k] = v
	delete(o.raw, k)
	return v
}

func (o *lazyObject) Set(k string, v goja.Value) bool {
	if !o.Has(k) {
		o.names = append(o.names, k)
	}
	delete(o.raw, k)
	o.vals[k] = v
	return true
}

func (o *lazyObject) Has(k string) bool {
	_, raw := o.raw[k]
	_, val := o.vals[k]
	return raw || val
}

func (o *lazyObject) Delete(k string) bool {
	delete(o.raw, k)
	delete(o.vals, k)
	if i := slices.Index(o.names, k); i >= 0 {
		o.names = slices.Delete(o.names, i, i+1)
	}
	return true
}

func (o *lazyObject) Keys() []string { return slices.Clone(o.names) }
