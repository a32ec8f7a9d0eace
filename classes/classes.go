// Package classes holds the classes built into the strata binary. They are
// written exactly as a user writes a class, and serve as the examples.
package classes

import "github.com/strata-objects/strata/objects"

// All returns the built-in classes.
func All() []*objects.Class {
	return []*objects.Class{Counter(), KV(), Session(), Chat(), Account(), SQL(), SQLCounter(), Relay()}
}
