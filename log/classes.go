package log

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/nats-io/nats.go/jetstream"
)

// The class store: deployed classes (JavaScript modules compiled at deploy
// time, see the jsclass package) live in a JetStream KV bucket, one key per
// class version ("<class>.<version>"), so every node of a cluster has them.
// Like the token store, each node watches the bucket and keeps the records
// in memory; a deploy reaches every node as fast as the watch delivers it.
// Versions are never deleted or overwritten: a rollback is a new version
// holding an old version's code, so the bucket is also the record of who
// deployed what, and when.

// ClassesBucket is the KV bucket holding deployed class versions.
const ClassesBucket = "STRATA_CLASSES"

// ClassCodeBytesMax bounds a deployed version's compiled code.
const ClassCodeBytesMax = 4 << 20

var (
	// ErrNoClassVersion: no such deployed class or version.
	ErrNoClassVersion = errors.New("log: no such class version")
)

// ClassVersion is one deployed version of a class.
type ClassVersion struct {
	Class   string `cbor:"1,keyasint"`
	Version uint64 `cbor:"2,keyasint"`
	// Kind says what Code is: "js" (a script compiled by the jsclass package).
	Kind string `cbor:"3,keyasint"`
	Code []byte `cbor:"4,keyasint"`
	// Source is the name of the file deployed (for people), SourceHash the
	// SHA-256 of what was uploaded.
	Source     string `cbor:"5,keyasint,omitempty"`
	SourceHash []byte `cbor:"6,keyasint,omitempty"`
	CreatedAt  int64  `cbor:"7,keyasint"` // unix nanoseconds
	CreatedBy  string `cbor:"8,keyasint,omitempty"`
	// RollbackOf is the version whose code this one redeploys (0: none).
	RollbackOf uint64 `cbor:"9,keyasint,omitempty"`
	// TurnTimeoutMs is the class's CPU-time limit per turn (0: default).
	TurnTimeoutMs int64 `cbor:"10,keyasint,omitempty"`
	// Export is the exported class name inside the module.
	Export string `cbor:"11,keyasint,omitempty"`
}

func classKey(class string, version uint64) string {
	return class + "." + strconv.FormatUint(version, 10)
}

func parseClassKey(k string) (string, uint64, bool) {
	class, v, ok := strings.Cut(k, ".")
	if !ok || !ValidClass(class) {
		return "", 0, false
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n == 0 {
		return "", 0, false
	}
	return class, n, true
}

// Classes is this node's view of the class bucket, kept current by a watch.
type Classes struct {
	kv     jetstream.KeyValue
	logger *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}

	mu struct {
		sync.Mutex
		byClass map[string]map[uint64]*ClassVersion
		notify  []func(class string)
	}
}

// OpenClasses creates the bucket if needed, reads every record and watches
// for changes until Close.
func (l *Log) OpenClasses(ctx context.Context) (*Classes, error) {
	kv, err := l.openBucket(ctx, jetstream.KeyValueConfig{
		Bucket:       ClassesBucket,
		Description:  "Strata deployed class versions",
		History:      1,
		Storage:      jetstream.FileStorage,
		Replicas:     l.cfg.Replicas,
		MaxValueSize: ClassCodeBytesMax + 64<<10,
	})
	if err != nil {
		return nil, err
	}
	c := &Classes{kv: kv, logger: l.cfg.Logger.With("component", "classes"), done: make(chan struct{})}
	c.mu.byClass = map[string]map[uint64]*ClassVersion{}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("log: watch %s: %w", ClassesBucket, err)
	}
	for done := false; !done; {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return nil, fmt.Errorf("log: watch %s: closed", ClassesBucket)
			}
			if e == nil {
				done = true
				break
			}
			c.apply(e)
		case <-ctx.Done():
			w.Stop()
			return nil, fmt.Errorf("log: watch %s: %w", ClassesBucket, ctx.Err())
		}
	}
	var runCtx context.Context
	runCtx, c.cancel = context.WithCancel(context.Background())
	go c.run(runCtx, w)
	return c, nil
}

// Close stops the watch.
func (c *Classes) Close() {
	c.cancel()
	<-c.done
}

// OnChange registers fn, called (on the watch's goroutine) with the name of
// a class that got a new version. It must not block.
func (c *Classes) OnChange(fn func(class string)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mu.notify = append(c.mu.notify, fn)
}

func (c *Classes) run(ctx context.Context, w jetstream.KeyWatcher) {
	defer close(c.done)
	defer func() { w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Updates():
			if ok {
				if e != nil {
					c.apply(e)
				}
				continue
			}
			for {
				wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				nw, err := c.kv.WatchAll(wctx)
				cancel()
				if err == nil {
					w = nw
					break
				}
				c.logger.Warn("class watch not restarted; retrying", "err", err)
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Second):
				}
			}
		}
	}
}

func (c *Classes) apply(e jetstream.KeyValueEntry) {
	if e.Operation() != jetstream.KeyValuePut {
		return // versions are never deleted; a purge by hand changes nothing here
	}
	class, version, ok := parseClassKey(e.Key())
	if !ok {
		c.logger.Warn("class record with a bad key ignored", "key", e.Key())
		return
	}
	var cv ClassVersion
	if err := cbor.Unmarshal(e.Value(), &cv); err != nil || cv.Class != class || cv.Version != version {
		c.logger.Warn("unreadable class record ignored", "key", e.Key(), "err", err)
		return
	}
	c.set(&cv)
}

func (c *Classes) set(cv *ClassVersion) {
	c.mu.Lock()
	vs := c.mu.byClass[cv.Class]
	if vs == nil {
		vs = map[uint64]*ClassVersion{}
		c.mu.byClass[cv.Class] = vs
	}
	_, had := vs[cv.Version]
	vs[cv.Version] = cv
	notify := c.mu.notify
	c.mu.Unlock()
	if !had {
		for _, fn := range notify {
			fn(cv.Class)
		}
	}
}

// Latest returns the newest version of class this node knows.
func (c *Classes) Latest(class string) (*ClassVersion, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var best *ClassVersion
	for _, cv := range c.mu.byClass[class] {
		if best == nil || cv.Version > best.Version {
			best = cv
		}
	}
	return best, best != nil
}

// Version returns one version of class.
func (c *Classes) Version(class string, version uint64) (*ClassVersion, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cv, ok := c.mu.byClass[class][version]
	return cv, ok
}

// Versions lists the versions of class, oldest first.
func (c *Classes) Versions(class string) []*ClassVersion {
	c.mu.Lock()
	out := make([]*ClassVersion, 0, len(c.mu.byClass[class]))
	for _, cv := range c.mu.byClass[class] {
		out = append(out, cv)
	}
	c.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out
}

// Names lists the deployed classes, sorted.
func (c *Classes) Names() []string {
	c.mu.Lock()
	out := make([]string, 0, len(c.mu.byClass))
	for n := range c.mu.byClass {
		out = append(out, n)
	}
	c.mu.Unlock()
	sort.Strings(out)
	return out
}

// Refresh reads class's versions from the bucket itself, for a node that
// is asked for a class its watch has not delivered yet.
func (c *Classes) Refresh(ctx context.Context, class string) error {
	if !ValidClass(class) {
		return fmt.Errorf("%w: %q", ErrNoClassVersion, class)
	}
	lister, err := c.kv.ListKeysFiltered(ctx, class+".*")
	if err != nil {
		return fmt.Errorf("log: list class %s: %w", class, err)
	}
	defer lister.Stop()
	for k := range lister.Keys() {
		e, err := c.kv.Get(ctx, k)
		if err != nil {
			return fmt.Errorf("log: read class %s: %w", k, err)
		}
		c.apply(e)
	}
	return nil
}

// Deploy stores cv as the next version of its class (cv.Version is set
// here) and returns it. Of two deploys at once, each gets its own version.
// The record is in this node's view when Deploy returns.
func (c *Classes) Deploy(ctx context.Context, cv ClassVersion) (*ClassVersion, error) {
	if !ValidClass(cv.Class) {
		return nil, fmt.Errorf("log: class name %q", cv.Class)
	}
	if len(cv.Code) > ClassCodeBytesMax {
		return nil, fmt.Errorf("log: class %s: code of %d bytes, at most %d: %w", cv.Class, len(cv.Code), ClassCodeBytesMax, ErrTooLarge)
	}
	if err := c.Refresh(ctx, cv.Class); err != nil {
		return nil, err
	}
	next := uint64(1)
	if last, ok := c.Latest(cv.Class); ok {
		next = last.Version + 1
	}
	for attempt := 0; attempt < 64; attempt++ {
		cv.Version = next
		b, err := cbor.Marshal(cv)
		if err != nil {
			return nil, fmt.Errorf("log: encode class %s: %w", cv.Class, err)
		}
		_, err = c.kv.Create(ctx, classKey(cv.Class, next), b)
		if err == nil {
			out := cv
			c.set(&out)
			return &out, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, fmt.Errorf("log: deploy class %s v%d: %w", cv.Class, next, err)
		}
		next++ // another deploy took it
	}
	return nil, fmt.Errorf("log: deploy class %s: too many concurrent deploys", cv.Class)
}
