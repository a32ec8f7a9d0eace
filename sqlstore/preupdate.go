package sqlstore

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"unsafe"

	"modernc.org/libc"
	"modernc.org/libc/sys/types"
	sqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// A captured row's values, read whole.
//
// modernc's SQLitePreUpdateData.Old and New read a TEXT value as a C
// string, so one with a NUL byte inside came back cut at the NUL: the
// event recorded the cut value, a replay wrote it, and a row read back
// whole from the live file came back cut after a restart. SQLite itself
// keeps the whole value (sqlite3_value_bytes says how long), and the
// query path reads it so. SQLitePreUpdateData exports no other way to a
// value, so preUpdateRow reads the values through its cursor, the
// unexported fields tls and pCsr that modernc's own reader uses, as long
// as the type still starts with them (preUpdateCursorOK, checked once).
// Otherwise it falls back to Old and New, and TestCaptureKeepsTextWithNUL
// fails: a modernc upgrade that moves the fields is caught there.

// preUpdateCursor mirrors the start of sqlite.SQLitePreUpdateData.
type preUpdateCursor struct {
	tls  *libc.TLS
	pCsr uintptr
}

// preUpdateCursorOK reports whether SQLitePreUpdateData starts as
// preUpdateCursor does.
var preUpdateCursorOK = func() bool {
	t := reflect.TypeFor[sqlite.SQLitePreUpdateData]()
	m := reflect.TypeFor[preUpdateCursor]()
	if t.NumField() < m.NumField() {
		return false
	}
	for i := range m.NumField() {
		f, g := t.Field(i), m.Field(i)
		if f.Name != g.Name || f.Type != g.Type || f.Offset != g.Offset {
			return false
		}
	}
	return true
}()

// preUpdateRow reads the n values of the row u replaces (old) or writes.
func preUpdateRow(u *sqlite.SQLitePreUpdateData, n int, old bool) ([]any, error) {
	vals := make([]any, n)
	if !preUpdateCursorOK {
		var err error
		if old {
			err = u.Old(vals...)
		} else {
			err = u.New(vals...)
		}
		return vals, err
	}
	c := (*preUpdateCursor)(unsafe.Pointer(u))
	pp := libc.Xmalloc(c.tls, types.Size_t(unsafe.Sizeof(uintptr(0))))
	if pp == 0 {
		return nil, errors.New("out of memory")
	}
	defer libc.Xfree(c.tls, pp)
	for i := range vals {
		var rc int32
		if old {
			rc = sqlite3.Xsqlite3_preupdate_old(c.tls, c.pCsr, int32(i), pp)
		} else {
			rc = sqlite3.Xsqlite3_preupdate_new(c.tls, c.pCsr, int32(i), pp)
		}
		switch rc {
		case sqlite3.SQLITE_OK:
		case sqlite3.SQLITE_RANGE:
			// A VIRTUAL generated column: not in the record, recomputed
			// from the others (NULL here, as Apply never writes it).
			continue
		default:
			return nil, fmt.Errorf("column %d: sqlite3_preupdate_%s: code %d", i, map[bool]string{true: "old", false: "new"}[old], rc)
		}
		v := libc.AtomicLoadPUintptr(pp)
		switch sqlite3.Xsqlite3_value_type(c.tls, v) {
		case sqlite3.SQLITE_INTEGER:
			vals[i] = sqlite3.Xsqlite3_value_int64(c.tls, v)
		case sqlite3.SQLITE_FLOAT:
			vals[i] = sqlite3.Xsqlite3_value_double(c.tls, v)
		case sqlite3.SQLITE_BLOB:
			p := sqlite3.Xsqlite3_value_blob(c.tls, v)
			size := sqlite3.Xsqlite3_value_bytes(c.tls, v)
			b := []byte{}
			if size > 0 {
				b = bytes.Clone(libc.GoBytes(p, int(size)))
			}
			vals[i] = b
		case sqlite3.SQLITE_TEXT:
			// text first, then bytes: the length of the text as read
			p := sqlite3.Xsqlite3_value_text(c.tls, v)
			size := sqlite3.Xsqlite3_value_bytes(c.tls, v)
			vals[i] = ""
			if size > 0 {
				vals[i] = string(libc.GoBytes(p, int(size)))
			}
		default: // NULL
		}
	}
	return vals, nil
}
