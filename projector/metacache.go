package projector

import "github.com/strata-objects/strata/log"

// The meta cache. Every event the apply path stages starts by reading its
// object's meta (applied version, chain hash), which was a Badger get per
// event: a search of the memtables and the levels, about half of the apply
// path's CPU in W3's profile. The projector is the snapshot's only writer,
// and meta is written only under applyMu (stage, Install), so a copy of
// what it committed, kept under applyMu, is exact:
//
//   - a meta staged in a transaction goes in the batch's own map first
//     (txnBatch.metas), read before the cache, and reaches the cache only
//     when that transaction has committed; a transaction dropped without
//     a commit (restart, restageAndCommit) drops its map with it;
//   - a commit that fails drops its objects from the cache, since Badger
//     may hold either side of it: their next event reads Badger again;
//   - an object absent from the snapshot is cached as the zero Meta, which
//     is what readMeta says of it.
//
// The cache holds at most metaCacheLen objects; past it an arbitrary one
// (the first of Go's randomised map order) makes room.

// metaCacheLen bounds the objects whose meta the cache holds: above the
// runtime's default MaxActivations (10,000), at about 150 bytes of map
// per object plus its name, a few MiB.
const metaCacheLen = 1 << 14

// objectRef names an object in the cache.
type objectRef struct {
	class string
	id    log.ID
}

// metaCache is what the projector committed of each object's meta, for
// at most max objects. Guarded by applyMu.
type metaCache struct {
	m   map[objectRef]Meta
	max int
}

func newMetaCache(max int) *metaCache {
	return &metaCache{m: make(map[objectRef]Meta), max: max}
}

func (c *metaCache) get(o objectRef) (Meta, bool) {
	m, ok := c.m[o]
	return m, ok
}

// put records o's committed meta, evicting another object if full.
func (c *metaCache) put(o objectRef, m Meta) {
	if _, ok := c.m[o]; !ok && len(c.m) >= c.max {
		for k := range c.m {
			delete(c.m, k)
			break
		}
	}
	c.m[o] = m
}

// committed moves the metas of a committed transaction into the cache.
func (c *metaCache) committed(staged map[objectRef]Meta) {
	for o, m := range staged {
		c.put(o, m)
	}
}

// forget drops the objects of a transaction whose commit failed.
func (c *metaCache) forget(staged map[objectRef]Meta) {
	for o := range staged {
		c.drop(o)
	}
}

func (c *metaCache) drop(o objectRef) { delete(c.m, o) }
