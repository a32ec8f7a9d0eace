package jsclass

import (
	"context"
	"errors"
)

// ReplayClass is not built yet.
func (r *Registry) ReplayClass(ctx context.Context, class, filename string, source []byte, export string, objs []string, sample int) (any, error) {
	return nil, errors.New("replay: not yet")
}
