package log

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// Clustering of embedded servers (DESIGN.md, "Scale-out"). Each node runs
// its own NATS server; the servers are joined by routes into one cluster
// whose JetStream replicates the streams (R3) and does consensus. Strata
// itself replicates nothing.
//
// Node-to-node traffic is authenticated with one shared credential: the
// same user and password protect the route listener (servers joining the
// cluster) and the client listener (Strata nodes and tools publishing into
// the streams). A server with other credentials cannot join the routes, and
// a client with other credentials cannot connect, so neither can publish.

// Auth is the user and password of the cluster's route and client
// listeners. The zero value means no authentication (one node alone on
// loopback).
type Auth struct {
	User     string
	Password string
}

// Enabled reports whether credentials are set.
func (a Auth) Enabled() bool { return a.User != "" || a.Password != "" }

func (a Auth) validate() error {
	if !a.Enabled() {
		return nil
	}
	if a.User == "" || a.Password == "" {
		return errors.New("log: auth needs both a user and a password")
	}
	if len(a.Password) < authPasswordMin {
		return fmt.Errorf("log: auth password of %d characters, want at least %d", len(a.Password), authPasswordMin)
	}
	return nil
}

// authPasswordMin is the shortest accepted password: the cluster's only
// secret should not be guessable.
const authPasswordMin = 12

// ClusterConfig joins an embedded server to other servers by routes.
type ClusterConfig struct {
	// Name is the NATS cluster's name, the same on every node; default
	// "strata".
	Name string
	// Host and Port are the route listener; Port 0 picks a free port
	// (ClusterAddr tells which).
	Host string
	Port int
	// Routes are the other servers' route addresses, host:port. A server
	// may list itself; it ignores that route.
	Routes []string
	// RoutePingInterval is how often a route that carried nothing is
	// pinged; default 1s. RouteMaxPingsOut is how many pings may go
	// unanswered before the route is closed as stale; default 3. Together
	// they bound how long a silently cut peer (packets dropped, no FIN or
	// RST) keeps a route that swallows requests: about interval × (max+1),
	// 4 s by default. NATS's own defaults for routes (a ping every 30 s,
	// 2 out) left such routes open until the write deadline closed them,
	// 14-33 s after a cut, and requests toward the cut peer timed out
	// meanwhile (issue 22). Zero means the default; a ping is a few bytes.
	RoutePingInterval time.Duration
	RouteMaxPingsOut  int
}

// Defaults of ClusterConfig.
const (
	defaultClusterName = "strata"
	// routeConnectRetries: a route to a server that is down is retried
	// (every second) for as long as this many attempts, then dropped until
	// the other side connects: the cluster gossips routes, so one live
	// route is enough to find the rest.
	routeConnectRetries = 3600
	// DefaultRoutePingInterval and DefaultRouteMaxPingsOut: a silent peer's
	// routes close about 4 s after it falls silent (ClusterConfig).
	DefaultRoutePingInterval = time.Second
	DefaultRouteMaxPingsOut  = 3
	// routePingIntervalMin keeps pings from becoming the routes' load;
	// nats-server caps the interval of routes at 30 s itself.
	routePingIntervalMin = 100 * time.Millisecond
	routePingIntervalMax = 30 * time.Second
)

// serverNameRe is what a node (server) name may be: it is part of NATS
// subjects (a node's request subject) and of KV keys.
var serverNameRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidNodeName reports whether name may name a node.
func ValidNodeName(name string) error {
	if !serverNameRe.MatchString(name) {
		return fmt.Errorf("log: node name %q: want 1 to 64 letters, digits, '-' or '_'", name)
	}
	return nil
}

// applyCluster sets the route and auth options of an embedded server.
func applyCluster(opts *server.Options, cfg EmbeddedConfig) error {
	if err := cfg.Auth.validate(); err != nil {
		return err
	}
	if cfg.Auth.Enabled() {
		opts.Username, opts.Password = cfg.Auth.User, cfg.Auth.Password
	}
	c := cfg.Cluster
	if c == nil {
		return nil
	}
	if err := ValidNodeName(cfg.ServerName); err != nil {
		return err
	}
	if len(c.Routes) == 0 {
		return errors.New("log: a clustered server needs routes (the other servers' route addresses; listing itself too is fine)")
	}
	if c.Port < 0 || c.Port > 65535 {
		return fmt.Errorf("log: cluster port %d out of range", c.Port)
	}
	if c.Name == "" {
		c.Name = defaultClusterName
	}
	if c.Host == "" {
		c.Host = defaultHost
	}
	if c.RoutePingInterval == 0 {
		c.RoutePingInterval = DefaultRoutePingInterval
	}
	if c.RouteMaxPingsOut == 0 {
		c.RouteMaxPingsOut = DefaultRouteMaxPingsOut
	}
	if c.RoutePingInterval < routePingIntervalMin || c.RoutePingInterval > routePingIntervalMax {
		return fmt.Errorf("log: route ping interval %s: want %s to %s", c.RoutePingInterval, routePingIntervalMin, routePingIntervalMax)
	}
	if c.RouteMaxPingsOut < 1 {
		return fmt.Errorf("log: route max pings out %d: want at least 1", c.RouteMaxPingsOut)
	}
	port := c.Port
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts.Cluster = server.ClusterOpts{
		Name:           c.Name,
		Host:           c.Host,
		Port:           port,
		Username:       cfg.Auth.User,
		Password:       cfg.Auth.Password,
		ConnectRetries: routeConnectRetries,
		// Set here, in the cluster block, so they apply to routes; the
		// top-level PingInterval and MaxPingsOut are the clients'.
		PingInterval: c.RoutePingInterval,
		MaxPingsOut:  c.RouteMaxPingsOut,
	}
	for _, r := range c.Routes {
		host, p, err := net.SplitHostPort(r)
		if err != nil {
			return fmt.Errorf("log: route %q: want host:port: %w", r, err)
		}
		if n, err := strconv.Atoi(p); err != nil || n <= 0 || n > 65535 {
			return fmt.Errorf("log: route %q: bad port", r)
		}
		u := &url.URL{Scheme: "nats-route", Host: net.JoinHostPort(host, p)}
		if cfg.Auth.Enabled() {
			u.User = url.UserPassword(cfg.Auth.User, cfg.Auth.Password)
		}
		opts.Routes = append(opts.Routes, u)
	}
	return nil
}

// ClusterAddr is the route listener's address (host:port), "" when the
// server is not clustered.
func (s *Server) ClusterAddr() string {
	a := s.ns.ClusterAddr()
	if a == nil {
		return ""
	}
	return a.String()
}

// Routes is the number of other servers this one has routes to.
func (s *Server) Routes() int { return s.ns.NumRemotes() }

// ensureStreamsRetrying creates the streams, waiting while a cluster forms:
// a replicated stream cannot be created until its replicas' servers have
// joined and JetStream has a meta leader.
func (l *Log) ensureStreamsRetrying(ctx context.Context) (int, error) {
	if l.cfg.Replicas <= 1 {
		return l.ensureStreams(ctx)
	}
	ctx, cancel := context.WithTimeout(ctx, clusterFormTimeout)
	defer cancel()
	for attempt := 1; ; attempt++ {
		// A JetStream API request sent before the cluster has a meta
		// leader is dropped, not refused: each attempt has its own bound.
		actx, acancel := context.WithTimeout(ctx, clusterAttemptTimeout)
		shards, err := l.ensureStreams(actx)
		acancel()
		if err == nil {
			return shards, l.awaitStreamLeaders(ctx, shards)
		}
		if attempt == 1 || attempt%20 == 0 {
			l.cfg.Logger.Info("log: waiting for the cluster to form", "replicas", l.cfg.Replicas, "err", err)
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("log: the cluster did not form within %s: %w", clusterFormTimeout, err)
		case <-time.After(clusterFormRetry):
		}
	}
}

// awaitStreamLeaders returns once every stream of every shard answers a
// request for its state. A stream just created has no leader until its Raft
// group elects one, and a request meanwhile is dropped, not refused: the
// reads that follow Open (the snapshot's catch-up) would each wait out a
// whole RequestTimeout.
func (l *Log) awaitStreamLeaders(ctx context.Context, shards int) error {
	var names []string
	for n := range shards {
		names = append(names, LogStream(n), TimerStream(n), CkptStream(n))
	}
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := whileElecting(ctx, func(ctx context.Context) error {
				if _, err := l.js.Stream(ctx, name); err != nil {
					// Any answer but the state means not yet (a stream
					// just created can be unknown to the server asked).
					// %v, not %w: whileElecting stops at an API error
					// other than 500/503, and "not found" is one here.
					return fmt.Errorf("no answer yet: %v", err)
				}
				return nil
			})
			if err != nil {
				errs[i] = fmt.Errorf("log: stream %s has no leader within %s: %w", name, clusterFormTimeout, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// whileElecting runs attempt, each try bounded by clusterAttemptTimeout,
// again every clusterFormRetry while it fails for want of a leader (the
// request timed out, had no responders, or JetStream answered 500 or 503),
// until ctx ends. A replicated stream electing a leader, or a cluster whose
// meta leader is moving, drops requests rather than refusing them.
func whileElecting(ctx context.Context, attempt func(ctx context.Context) error) error {
	for {
		actx, acancel := context.WithTimeout(ctx, clusterAttemptTimeout)
		err := attempt(actx)
		acancel()
		if err == nil {
			return nil
		}
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.Code != 503 && apiErr.Code != 500 {
			return err // refused for a reason waiting does not change
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(clusterFormRetry):
		}
	}
}

const (
	clusterFormTimeout    = 2 * time.Minute
	clusterAttemptTimeout = 2 * time.Second
	clusterFormRetry      = 250 * time.Millisecond
)
