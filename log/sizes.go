package log

import (
	"context"
	"fmt"
)

// StreamSize is one stream's size as its leader reports it.
type StreamSize struct {
	Stream   string // STRATA_LOG_<n> or STRATA_TIMERS_<n>
	Kind     string // "log" or "timers"
	Shard    int
	Messages uint64
	Bytes    uint64
}

// StreamSizes reports the size of every shard's log and timer stream, for
// metrics. It asks the server once per stream, so it is for a scrape, not
// for a hot path. A stream that does not answer ends it with an error.
func (l *Log) StreamSizes(ctx context.Context) ([]StreamSize, error) {
	out := make([]StreamSize, 0, 2*l.shards)
	for shard := range l.shards {
		for _, s := range []struct{ kind, name string }{{"log", LogStream(shard)}, {"timers", TimerStream(shard)}} {
			st, err := l.streamState(ctx, shard, s.name)
			if err != nil {
				return out, fmt.Errorf("stream sizes: %w", err)
			}
			out = append(out, StreamSize{Stream: s.name, Kind: s.kind, Shard: shard, Messages: st.Msgs, Bytes: st.Bytes})
		}
	}
	return out, nil
}
