package log

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Standing by: keeping a cut-off server's Raft groups from campaigning
// (issue 22).
//
// A server cut off from the others does not hear its groups' leaders, so
// each of its Raft groups (the JetStream meta group, every stream's) calls
// an election when its timer fires (4 to 9 s in nats-server), loses it for
// want of votes, and calls the next one with a higher term. nats-server
// has no pre-vote: at the heal the first vote request with that inflated
// term makes the majority's leaders step down ("Detected another leader
// with higher term"), and the cluster has no meta leader, nor the streams
// a leader, until an election is won, 4 to 9 s later. That was the heal
// stall of every partition test.
//
// nats-server keeps a group from campaigning only as an observer
// (RaftNode.SetObserver), and nothing exported reaches a server's Raft
// nodes: the server's list of them, its jetStream and its streams are
// unexported, and it sets observers itself only in lame duck mode (which
// ends in shutdown), at shutdown, and for a leaf node remote's migration
// of streams (not the meta group). What is exported is ShutdownJetStream,
// which stops JetStream and every Raft group while keeping their state on
// disk (term, vote, log, as at a process restart), and EnableJetStream,
// which starts it again from that state, by the path a server start takes.
// A server that lost its membership lease (no majority acknowledges its
// beats, so it is cut off or was paused) stands by: its groups stop
// before their first election timer fires (the lease runs out about a
// second after a cut with the partition test's settings, one to two
// seconds with the defaults; the timers fire 4 s at the earliest, and a
// meta leader's stop waits 2 s, see StandBy). It resumes when the lease is back,
// or as soon as routes reach a majority of the cluster again after they
// had fallen below it: a node that restarts must be able to join (join
// stores a key, which needs a JetStream quorum) while this one has no
// lease for want of that node's acks.
//
// Safety does not depend on it: stopping a Raft group and starting it
// again from its stored state is what a restart does, and a group that is
// stopped only counts as an absent peer. A standby server answers no
// JetStream requests; the node is without its lease then and serves
// nothing anyway.

// errNotClusteredStandby: a server alone has no Raft groups to keep quiet.
var errNotClusteredStandby = errors.New("log: stand by: the embedded NATS server is not clustered")

// standby is a Server's standby state.
type standby struct {
	mu      sync.Mutex // held through a stop or a start of JetStream
	on      bool
	closed  bool                   // the server is shutting down: no more standing by
	jsCfg   server.JetStreamConfig // what EnableJetStream needs to start it again
	stop    chan struct{}          // closes the route watch
	watchWG sync.WaitGroup
	logf    func(msg string, args ...any)
}

// standbyRoutesCheck is how often a standby server looks at its routes.
const standbyRoutesCheck = 100 * time.Millisecond

// StandBy stops this server's JetStream and with it every Raft group it
// takes part in, keeping their state on disk, so that none of them calls
// elections while the server is cut off (above). It steps down first from
// the stream leaderships it holds. It returns at once if already standing
// by; a server that is not clustered has no groups (an error).
// Stopping a meta leader's JetStream waits up to 2 s for its leadership
// to move (nats-server's disableJetStream).
func (s *Server) StandBy() error {
	if !s.clustered {
		return errNotClusteredStandby
	}
	s.sb.mu.Lock()
	defer s.sb.mu.Unlock()
	if s.sb.on {
		return nil
	}
	if s.sb.closed {
		return errors.New("log: stand by: the server is shutting down")
	}
	st, err := s.RaftStatus() // for the quorum; 0 means no route watch
	if err != nil {
		s.sb.logf("stand by: raft status", "err", err)
	}
	if _, err := s.StepDown(); err != nil {
		s.sb.logf("stand by: step down", "err", err)
	}
	cfg := s.ns.JetStreamConfig()
	if cfg == nil {
		return errors.New("log: stand by: JetStream is not running")
	}
	s.sb.jsCfg = *cfg
	// EnableJetStream puts its store under StoreDir/jetstream, and the
	// running config names that subfolder already.
	s.sb.jsCfg.StoreDir = s.storeDir
	if err := s.ns.ShutdownJetStream(); err != nil {
		return fmt.Errorf("log: stand by: %w", err)
	}
	s.sb.on = true
	if st.MetaSize > 0 {
		s.sb.stop = make(chan struct{})
		s.sb.watchWG.Add(1)
		go s.watchRoutes(s.sb.stop, st.MetaSize/2+1)
	}
	return nil
}

// Resume starts this server's JetStream again after StandBy, from its
// stored state: its Raft groups rejoin as followers of the leaders the
// others elected meanwhile. It returns at once if not standing by.
func (s *Server) Resume() error {
	s.sb.mu.Lock()
	defer s.sb.mu.Unlock()
	return s.resumeLocked()
}

func (s *Server) resumeLocked() error {
	if !s.sb.on {
		return nil
	}
	if s.sb.closed {
		return errors.New("log: resume: the server is shutting down")
	}
	cfg := s.sb.jsCfg
	if err := s.ns.EnableJetStream(&cfg); err != nil {
		// A start that failed half way leaves JetStream off: shut down
		// what started, so that the next attempt starts from clean.
		s.ns.ShutdownJetStream()
		return fmt.Errorf("log: resume JetStream in %s: %w", s.storeDir, err)
	}
	s.sb.on = false
	if s.sb.stop != nil {
		close(s.sb.stop)
		s.sb.stop = nil
	}
	return nil
}

// StandingBy reports whether JetStream is stopped by StandBy.
func (s *Server) StandingBy() bool {
	s.sb.mu.Lock()
	defer s.sb.mu.Unlock()
	return s.sb.on
}

// watchRoutes resumes a standby server once its routes reach a majority
// of the meta group (counting itself) after they had fallen below it:
// the others may need this server's JetStream to form a quorum before
// they can acknowledge its beats (a node restarting joins by storing a
// key). Routes that never fell below it (a silent cut is noticed by the
// lease before the route pings) are no sign of a heal.
func (s *Server) watchRoutes(stop <-chan struct{}, quorum int) {
	defer s.sb.watchWG.Done()
	t := time.NewTicker(standbyRoutesCheck)
	defer t.Stop()
	fell := false
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		reached := s.ns.NumRemotes()+1 >= quorum
		if !reached {
			fell = true
			continue
		}
		if !fell {
			continue
		}
		s.sb.mu.Lock()
		select {
		case <-stop: // resumed meanwhile
			s.sb.mu.Unlock()
			return
		default:
		}
		start := time.Now()
		err := s.resumeLocked()
		s.sb.mu.Unlock()
		if err == nil {
			s.sb.logf("routes reach a majority again: JetStream resumed", "took", time.Since(start))
			return
		}
		s.sb.logf("routes reach a majority again, but JetStream did not resume; trying again", "err", err)
		fell = false // until they fall and come back, or the lease does
	}
}

// stopStandby ends the route watch (at Shutdown).
func (s *Server) stopStandby() {
	s.sb.mu.Lock()
	s.sb.closed = true
	if s.sb.stop != nil {
		close(s.sb.stop)
		s.sb.stop = nil
	}
	s.sb.mu.Unlock()
	s.sb.watchWG.Wait()
}
