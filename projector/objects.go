package projector

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/dgraph-io/badger/v4"

	"github.com/strata-objects/strata/log"
)

// ObjectInfo is one object of a class as the snapshot knows it.
type ObjectInfo struct {
	ID   log.ID
	Meta Meta
}

// Objects calls fn for the objects of class in id order, starting after
// the id after (nil: from the first), that have a name with namePrefix
// ("": every object, named or not), until fn returns false. Listing scans
// the class's metas: its cost grows with the class, not with the answer.
func (p *Projector) Objects(class string, after *log.ID, namePrefix string, fn func(ObjectInfo) bool) error {
	if err := checkClass(class); err != nil {
		return err
	}
	prefix := objectKey(kindMeta, class, log.ID{}, "")[:1+len(class)+1]
	err := p.view(func(tx *badger.Txn) error {
		it := tx.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 100})
		defer it.Close()
		start := prefix
		if after != nil {
			start = append(metaKey(class, *after), 0) // just past it
		}
		for it.Seek(start); it.Valid(); it.Next() {
			k := it.Item().Key()
			if len(k) != len(prefix)+len(log.ID{}) || !bytes.HasPrefix(k, prefix) {
				continue
			}
			var info ObjectInfo
			copy(info.ID[:], k[len(prefix):])
			err := it.Item().Value(func(v []byte) error {
				var err error
				info.Meta, err = decodeMeta(v)
				return err
			})
			if err != nil {
				return fmt.Errorf("meta of %s/%s: %w", class, info.ID, err)
			}
			if namePrefix != "" && !strings.HasPrefix(info.Meta.Name, namePrefix) {
				continue
			}
			if !fn(info) {
				return nil
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("list objects of %s: %w", class, err)
	}
	return nil
}
