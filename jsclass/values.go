package jsclass

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sort"
	"time"

	"github.com/dop251/goja"
	"github.com/fxamacker/cbor/v2"
)

// Stored values keep their JavaScript types (a structured-clone subset):
// numbers, strings, booleans, null, arrays, plain objects, Dates and
// Uint8Arrays. A value made only of JSON types is stored as its JSON text,
// so Go classes, history and state read it as they read any value; a value
// holding a Date or bytes (or a number JSON cannot hold) is stored as one
// 0x00 byte (never the first byte of JSON) followed by CBOR, where a Date
// is tag 1 (epoch seconds) and bytes are a byte string.

const cborMarker = 0x00

// valueDepthMax bounds how deep a stored value nests.
const valueDepthMax = 64

var errCycle = errors.New("value is too deep or cyclic")

var (
	valEnc cbor.EncMode
	valDec cbor.DecMode
)

func init() {
	var err error
	valEnc, err = cbor.EncOptions{Sort: cbor.SortCoreDeterministic, Time: cbor.TimeUnixMicro, TimeTag: cbor.EncTagRequired}.EncMode()
	if err != nil {
		panic(err)
	}
	valDec, err = cbor.DecOptions{
		DefaultMapType:        reflect.TypeFor[map[string]any](),
		MaxNestedLevels:       valueDepthMax + 2,
		IndefLength:           cbor.IndefLengthForbidden,
		TimeTag:               cbor.DecTagOptional,
		DefaultByteStringType: reflect.TypeFor[[]byte](),
	}.DecMode()
	if err != nil {
		panic(err)
	}
}

// goValue turns a JavaScript value into a Go tree of nil, bool, float64,
// string, time.Time, []byte, []any and map[string]any; special says
// whether it holds anything JSON cannot.
func goValue(vm *goja.Runtime, v goja.Value, depth int, special *bool) (any, error) {
	if depth > valueDepthMax {
		return nil, errCycle
	}
	if v == nil || goja.IsUndefined(v) {
		return nil, errors.New("undefined cannot be stored")
	}
	if goja.IsNull(v) {
		return nil, nil
	}
	switch x := v.Export().(type) {
	case bool, string:
		return x, nil
	case int64:
		return float64(x), nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			*special = true
		}
		return x, nil
	case time.Time:
		*special = true
		return x.UTC(), nil
	case []byte:
		*special = true
		return bytes.Clone(x), nil
	}
	o, ok := v.(*goja.Object)
	if !ok {
		return nil, fmt.Errorf("a %s cannot be stored", v.ExportType())
	}
	switch o.ClassName() {
	case "Array":
		n := int(o.Get("length").ToInteger())
		out := make([]any, n)
		for i := 0; i < n; i++ {
			e := o.Get(fmt.Sprint(i))
			if e == nil || goja.IsUndefined(e) {
				out[i] = nil
				continue
			}
			gv, err := goValue(vm, e, depth+1, special)
			if err != nil {
				return nil, err
			}
			out[i] = gv
		}
		return out, nil
	case "Object":
		out := map[string]any{}
		for _, k := range o.Keys() {
			e := o.Get(k)
			if e == nil || goja.IsUndefined(e) {
				continue // as JSON and structured clone of undefined members in practice
			}
			if _, isFn := goja.AssertFunction(e); isFn {
				return nil, fmt.Errorf("property %q is a function and cannot be stored", k)
			}
			gv, err := goValue(vm, e, depth+1, special)
			if err != nil {
				return nil, err
			}
			out[k] = gv
		}
		return out, nil
	}
	return nil, fmt.Errorf("a %s cannot be stored (numbers, strings, booleans, null, arrays, objects, Date, Uint8Array can)", o.ClassName())
}

// encodeValue is a stored value's bytes.
func encodeValue(vm *goja.Runtime, v goja.Value) ([]byte, error) {
	var special bool
	gv, err := goValue(vm, v, 0, &special)
	if err != nil {
		return nil, err
	}
	if !special {
		return json.Marshal(gv)
	}
	b, err := valEnc.Marshal(gv)
	if err != nil {
		return nil, err
	}
	return append([]byte{cborMarker}, b...), nil
}

// decodeValue turns stored bytes back into a JavaScript value. Bytes that
// are neither (a Go class's raw value) come back as a Uint8Array.
func decodeValue(vm *goja.Runtime, b []byte) (goja.Value, error) {
	var gv any
	if len(b) > 0 && b[0] == cborMarker {
		if err := valDec.Unmarshal(b[1:], &gv); err != nil {
			return nil, fmt.Errorf("stored value: %w", err)
		}
	} else {
		d := json.NewDecoder(bytes.NewReader(b))
		if err := d.Decode(&gv); err != nil || d.More() {
			return jsBytes(vm, b), nil
		}
	}
	return jsValue(vm, gv)
}

func jsBytes(vm *goja.Runtime, b []byte) goja.Value {
	buf := vm.NewArrayBuffer(bytes.Clone(b))
	u8, _ := vm.New(vm.Get("Uint8Array"), vm.ToValue(buf))
	return u8
}

func jsValue(vm *goja.Runtime, gv any) (goja.Value, error) {
	switch x := gv.(type) {
	case nil:
		return goja.Null(), nil
	case bool, string, float64:
		return vm.ToValue(x), nil
	case uint64:
		return vm.ToValue(float64(x)), nil
	case int64:
		return vm.ToValue(float64(x)), nil
	case time.Time:
		return vm.New(vm.Get("Date"), vm.ToValue(float64(x.UnixNano())/1e6))
	case []byte:
		return jsBytes(vm, x), nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			jv, err := jsValue(vm, e)
			if err != nil {
				return nil, err
			}
			out[i] = jv
		}
		return vm.NewArray(out...), nil
	case map[string]any:
		o := vm.NewObject()
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			jv, err := jsValue(vm, x[k])
			if err != nil {
				return nil, err
			}
			o.Set(k, jv)
		}
		return o, nil
	}
	return nil, fmt.Errorf("stored value holds a %T", gv)
}
