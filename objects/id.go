package objects

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"unicode/utf8"

	"github.com/strata-objects/strata/log"
)

// ID is an object's identity: 32 bytes, shown as 64 lowercase hex digits.
type ID = log.ID

// nameBytesMax bounds an object's human name. Names travel in URLs and in
// the object's first event.
const nameBytesMax = 256

// IDFromName is the deterministic id of the object called name in class:
// SHA-256 over a domain tag, the class and the name, so the same name in two
// classes is two objects.
func IDFromName(class, name string) ID {
	h := sha256.New()
	h.Write([]byte("strata.v1\x00"))
	h.Write([]byte(class))
	h.Write([]byte{0})
	h.Write([]byte(name))
	var id ID
	h.Sum(id[:0])
	return id
}

// NewUniqueID returns a random id, for objects that have no name.
func NewUniqueID() ID {
	var id ID
	if _, err := rand.Read(id[:]); err != nil {
		panic(fmt.Sprintf("objects: crypto/rand failed: %v", err)) // the OS entropy source never fails on supported systems
	}
	return id
}

// ParseID validates the 64-hex-digit form of an id. Upper case is refused
// so that every id has exactly one spelling.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 2*len(id) {
		return id, fmt.Errorf("%w: %q is not 64 hex digits", ErrInvalidID, truncate(s))
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return id, fmt.Errorf("%w: %q is not 64 lowercase hex digits", ErrInvalidID, truncate(s))
		}
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("%w: %w", ErrInvalidID, err)
	}
	return id, nil
}

// ValidateClassName checks a class name: [a-z][a-z0-9-]{0,62}.
func ValidateClassName(class string) error {
	if !log.ValidClass(class) {
		return fmt.Errorf("%w: %q must match [a-z][a-z0-9-]{0,62}", ErrInvalidClass, truncate(class))
	}
	return nil
}

// ValidateName checks an object name: 1 to 256 bytes of UTF-8 without
// control characters.
func ValidateName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty", ErrInvalidName)
	case len(name) > nameBytesMax:
		return fmt.Errorf("%w: %d bytes, at most %d", ErrInvalidName, len(name), nameBytesMax)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: not valid UTF-8", ErrInvalidName)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w: control character %U", ErrInvalidName, r)
		}
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
