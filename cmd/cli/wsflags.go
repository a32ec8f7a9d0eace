package cli

import (
	"flag"
	"time"

	"github.com/strata-objects/strata/gateway"
)

// wsFlags are serve's WebSocket flags.
type wsFlags struct {
	ping       time.Duration
	readLimit  int64
	queueLen   int
	queueBytes int
	origins    string
}

func (w *wsFlags) register(fs *flag.FlagSet) {
	fs.DurationVar(&w.ping, "ws-ping-interval", 30*time.Second, "ping idle WebSockets this often; one silent for two intervals is dropped")
	fs.Int64Var(&w.readLimit, "ws-read-limit", 1<<20, "largest WebSocket message a client may send, in bytes (larger: close 1009)")
	fs.IntVar(&w.queueLen, "ws-send-queue", 256, "messages queued for one WebSocket before its client counts as too slow and is disconnected")
	fs.IntVar(&w.queueBytes, "ws-send-queue-bytes", 4<<20, "bytes queued for one WebSocket before its client is disconnected")
	fs.StringVar(&w.origins, "ws-origins", "", "comma-separated Origin hosts allowed to open WebSockets besides the gateway's own ('*': any)")
}

func (w *wsFlags) config() (gateway.WebSocketConfig, error) {
	if w.ping <= 0 || w.readLimit <= 0 || w.queueLen <= 0 || w.queueBytes <= 0 {
		return gateway.WebSocketConfig{}, &usageError{"--ws-ping-interval, --ws-read-limit, --ws-send-queue and --ws-send-queue-bytes must be positive"}
	}
	c := gateway.WebSocketConfig{PingInterval: w.ping, ReadLimitBytes: w.readLimit, SendQueueLen: w.queueLen, SendQueueBytes: w.queueBytes}
	c.AllowedOrigins = splitList(w.origins)
	return c, nil
}
