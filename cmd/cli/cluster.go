package cli

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/strata-objects/strata/cluster"
	"github.com/strata-objects/strata/gateway"
	"github.com/strata-objects/strata/log"
)

// clusterConfig is serve's scale-out flags (DESIGN.md, "Scale-out"):
// --cluster runs this node as one of several, either on embedded NATS
// servers joined by routes, or (with --nats-url) on an external NATS
// cluster.
type clusterConfig struct {
	enabled      bool
	node         string
	listen       string
	routes       string
	name         string
	replicas     int
	user         string
	password     string
	passwordFile string
	heartbeat    time.Duration
	ttl          time.Duration
	pingInterval time.Duration // of the embedded server's routes
	maxPingsOut  int
	standby      bool   // stand the embedded server by without the lease
	ownAll       bool   // split-brain test hook
	httpAddr     string // set by serve once the gateway listens
}

func (c *clusterConfig) register(fs *flag.FlagSet) {
	host, _ := os.Hostname()
	fs.BoolVar(&c.enabled, "cluster", false, "run as one node of a cluster: embedded NATS servers joined by --routes, or an external NATS cluster with --nats-url")
	fs.StringVar(&c.node, "node-name", host, "this node's name, unique in the cluster and the same across restarts (letters, digits, '-', '_')")
	fs.StringVar(&c.listen, "cluster-listen", "127.0.0.1:6222", "route address of the embedded NATS server, where the other nodes' servers connect")
	fs.StringVar(&c.routes, "routes", "", "comma-separated route addresses (host:port) of the cluster's servers; listing this node too is fine")
	fs.StringVar(&c.name, "cluster-name", "strata", "NATS cluster name, the same on every node")
	fs.IntVar(&c.replicas, "replicas", 0, "stream replicas (0: 3 with --cluster, 1 alone)")
	fs.StringVar(&c.user, "nats-user", "strata", "user of the NATS credentials: of routes and clients in cluster mode, of --nats-listen clients alone")
	fs.StringVar(&c.password, "nats-password", "", "password of the NATS credentials; prefer STRATA_NATS_PASSWORD or --nats-password-file (a flag shows in ps)")
	fs.StringVar(&c.passwordFile, "nats-password-file", "", "file holding the NATS password (its first line)")
	fs.DurationVar(&c.heartbeat, "heartbeat", time.Second, "interval of this node's membership heartbeat")
	fs.DurationVar(&c.ttl, "node-ttl", 3*time.Second, "a node whose heartbeats stop is dropped after this long, and its objects move")
	fs.DurationVar(&c.pingInterval, "route-ping-interval", log.DefaultRoutePingInterval, "interval of pings on idle routes to the other nodes; with --route-max-pings-out it bounds how long a silently cut node's routes stay open (about interval × (max+1))")
	fs.IntVar(&c.maxPingsOut, "route-max-pings-out", log.DefaultRouteMaxPingsOut, "unanswered route pings after which a route is closed as stale")
	fs.BoolVar(&c.standby, "standby-without-lease", true, "stop the embedded server's JetStream (its state kept) while this node has no membership lease, and start it again when the lease is back, so that a cut-off node's Raft groups do not call elections and stall the cluster at the heal; false keeps it running")
	fs.BoolVar(&c.ownAll, "unsafe-own-all", false, "TESTS ONLY: this node believes it owns every object (a split brain that only fencing guards)")
}

// validate settles defaults and reads the password file.
func (c *clusterConfig) validate(natsURL string) error {
	if c.replicas < 0 || c.replicas > 5 {
		return &usageError{fmt.Sprintf("--replicas %d: want 1..5 (0: the default)", c.replicas)}
	}
	if c.passwordFile != "" {
		b, err := os.ReadFile(c.passwordFile)
		if err != nil {
			return &usageError{fmt.Sprintf("--nats-password-file: %v", err)}
		}
		c.password, _, _ = strings.Cut(strings.TrimRight(string(b), "\r\n"), "\n")
	}
	if !c.enabled {
		if c.replicas == 0 {
			c.replicas = 1
		}
		if c.ownAll {
			return &usageError{"--unsafe-own-all needs --cluster"}
		}
		return nil
	}
	if c.replicas == 0 {
		c.replicas = 3
	}
	if err := log.ValidNodeName(c.node); err != nil {
		return &usageError{fmt.Sprintf("--node-name: %v", err)}
	}
	if c.heartbeat <= 0 || c.ttl < 2*c.heartbeat {
		return &usageError{"--node-ttl must be at least two --heartbeat intervals"}
	}
	if c.pingInterval <= 0 || c.maxPingsOut < 1 {
		return &usageError{"--route-ping-interval must be positive and --route-max-pings-out at least 1"}
	}
	if natsURL != "" {
		return nil // an external cluster: its own auth, in the URL or the flags
	}
	if c.routes == "" {
		return &usageError{"--cluster needs --routes (or --nats-url for an external NATS cluster)"}
	}
	if c.password == "" {
		return &usageError{"--cluster needs NATS credentials: STRATA_NATS_PASSWORD or --nats-password-file (node-to-node traffic is authenticated)"}
	}
	return nil
}

func (c *clusterConfig) auth() log.Auth {
	if c.password == "" {
		return log.Auth{}
	}
	return log.Auth{User: c.user, Password: c.password}
}

// embedded returns the route options of the embedded server, nil alone.
func (c *clusterConfig) embedded(host string, port int) *log.ClusterConfig {
	if !c.enabled {
		return nil
	}
	var routes []string
	for _, r := range strings.Split(c.routes, ",") {
		if r = strings.TrimSpace(r); r != "" {
			routes = append(routes, r)
		}
	}
	return &log.ClusterConfig{
		Name: c.name, Host: host, Port: port, Routes: routes,
		RoutePingInterval: c.pingInterval, RouteMaxPingsOut: c.maxPingsOut,
	}
}

// newRouter returns the node's router, not started, or nil alone.
// With an embedded server, the node stands by when its lease runs out
// and resumes when it is back (log.Server.StandBy, Resume), or with
// --standby-without-lease=false only steps down from the stream
// leaderships it holds (log.Server.StepDown); an external NATS keeps its
// own leaders.
func (c *clusterConfig) newRouter(l *log.Log, srv *log.Server, lc logConfig) (*cluster.Router, error) {
	if !c.enabled {
		return nil, nil
	}
	cfg := cluster.Config{
		Node: c.node, Log: l, Codec: gateway.JSONCodec, HTTPAddr: c.httpAddr,
		Heartbeat: c.heartbeat, TTL: c.ttl, OwnAll: c.ownAll, Logger: lc.logger, Tracer: lc.tracer,
	}
	if srv != nil && !c.standby {
		cfg.OnLeaseLost = func() {
			n, err := srv.StepDown()
			if err != nil {
				lc.logger.Warn("step down from the log's Raft groups after the lease ran out", "stepped_down", n, "err", err)
				return
			}
			lc.logger.Info("stepped down from the log's Raft groups this node led, after the lease ran out", "stepped_down", n)
		}
	}
	if srv != nil && c.standby {
		cfg.OnLeaseLost = func() {
			start := time.Now()
			if err := srv.StandBy(); err != nil {
				lc.logger.Warn("the log's server did not stand by after the lease ran out (its Raft groups may call elections while it is cut off)", "err", err)
				return
			}
			lc.logger.Info("the log's server stands by (JetStream stopped, its state kept) until the lease is back", "took", time.Since(start))
		}
		cfg.OnLeaseBack = func() error {
			if !srv.StandingBy() {
				return nil
			}
			start := time.Now()
			if err := srv.Resume(); err != nil {
				return err
			}
			lc.logger.Info("the log's server resumed (JetStream started again)", "took", time.Since(start))
			return nil
		}
	}
	return cluster.New(cfg)
}

// runCluster prints a node's view of the cluster: strata cluster.
func runCluster(ctx context.Context, env *Env, args []string) error {
	g := newGatewayFlags(env, "cluster", "cluster [flags]", "gateway of any node")
	fs, base := g.FlagSet, g.base
	asJSON := fs.Bool("json", false, "print the answer as JSON")
	raft := fs.Bool("raft", false, "show the NATS Raft groups' leaders (the JetStream meta leader, each stream's) as the node's embedded server sees them")
	ctx, err := g.parse(ctx, args)
	if err != nil {
		return err
	}
	path, print := "/v1/cluster", printCluster
	if *raft {
		path, print = "/v1/cluster/raft", printRaft
	}
	b, err := fetch(ctx, "GET", strings.TrimRight(*base, "/")+path, nil)
	if err != nil {
		return err
	}
	if *asJSON {
		_, err := env.Stdout.Write(b)
		return err
	}
	return print(env, b)
}

// applyEmbedded sets the embedded server's name, routes and credentials.
func (c *clusterConfig) applyEmbedded(ec *log.EmbeddedConfig) error {
	ec.Auth = c.auth()
	if !c.enabled {
		return nil
	}
	host, port, err := splitHostPort("--cluster-listen", c.listen)
	if err != nil {
		return err
	}
	ec.ServerName = c.node
	ec.Cluster = c.embedded(host, port)
	return nil
}

// splitHostPort parses a listen address flag.
func splitHostPort(flagName, addr string) (string, int, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, &usageError{fmt.Sprintf("%s %q: %v", flagName, addr, err)}
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, &usageError{fmt.Sprintf("%s %q: bad port", flagName, addr)}
	}
	return host, port, nil
}

// A cluster node serves WebSockets through its router.
var _ gateway.WebSocketBackend = (*cluster.Router)(nil)
