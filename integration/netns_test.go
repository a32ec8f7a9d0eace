package integration

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// netLab is a small network of namespaces for partition tests: a hub
// namespace holding two bridges, one for the nodes' routes and one for
// their clients, and one namespace per node joined to both bridges by
// veth pairs. The test process reaches the client bridge through one veth
// of its own. Every interface, address and namespace is the lab's own: the
// bridges live in the hub so that the host's firewall (which may filter
// bridged traffic) never sees the nodes' packets, and nothing of the host's
// configuration changes but one veth with an address in the lab's subnet.
//
// Cutting node i sets the hub's end of its route veth down: the node's
// packets to the others, and theirs to it, are dropped silently (no FIN,
// no RST), while its client link stays up so its answers can be measured.
type netLab struct {
	t      *testing.T
	tag    string // 4 hex digits in every name, unique per lab
	hub    string // the hub namespace
	nodes  []string
	routeN string // the route subnet's first three octets, "10.a.b"
	httpN  string // the client subnet's
}

// newNetLab makes a lab for n nodes, or skips the test with the reason it
// cannot (not root, no `ip`, namespaces not permitted).
func newNetLab(t *testing.T, n int) *netLab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("partition tests need root: they make network namespaces (ip netns), veth pairs and bridges")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("partition tests need iproute2's ip command: ", err)
	}
	var b [3]byte
	rand.Read(b[:])
	l := &netLab{t: t, tag: hex.EncodeToString(b[:2])}
	// A subnet the host does not use: 10.(200..249).(even).0/24 and the
	// next one.
	l.routeN = fmt.Sprintf("10.%d.%d", 200+int(b[2])%50, 2*(int(b[0])%120))
	l.httpN = fmt.Sprintf("10.%d.%d", 200+int(b[2])%50, 2*(int(b[0])%120)+1)
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if s := a.String(); strings.HasPrefix(s, l.routeN+".") || strings.HasPrefix(s, l.httpN+".") {
				t.Skipf("partition test: subnet %s.0/23 is in use here (%s); run again", l.routeN, s)
			}
		}
	}
	l.hub = "strata-" + l.tag + "-hub"
	if out, err := exec.Command("ip", "netns", "add", l.hub).CombinedOutput(); err != nil {
		t.Skipf("partition tests cannot make a network namespace here: ip netns add: %v: %s", err, out)
	}
	t.Cleanup(l.remove)
	hostEnd, hubEnd := "h"+l.tag+"c", "h"+l.tag+"C"
	l.run("ip", "-n", l.hub, "link", "set", "lo", "up")
	for _, br := range []string{l.bridge("r"), l.bridge("c")} {
		l.run("ip", "-n", l.hub, "link", "add", br, "type", "bridge")
		l.run("ip", "-n", l.hub, "link", "set", br, "up")
	}
	// The test process's own way in: a veth into the client bridge.
	l.run("ip", "link", "add", hostEnd, "type", "veth", "peer", "name", hubEnd, "netns", l.hub)
	l.run("ip", "-n", l.hub, "link", "set", hubEnd, "master", l.bridge("c"), "up")
	l.run("ip", "addr", "add", l.httpN+".254/24", "dev", hostEnd)
	l.run("ip", "link", "set", hostEnd, "up")
	for i := range n {
		ns := fmt.Sprintf("strata-%s-n%d", l.tag, i+1)
		l.run("ip", "netns", "add", ns)
		l.nodes = append(l.nodes, ns)
		l.run("ip", "-n", ns, "link", "set", "lo", "up")
		for _, kind := range []string{"r", "c"} {
			subnet := l.routeN
			if kind == "c" {
				subnet = l.httpN
			}
			hub, node := l.port(kind, i), fmt.Sprintf("%s%s%dn", kind, l.tag, i+1)
			l.run("ip", "-n", l.hub, "link", "add", hub, "type", "veth", "peer", "name", node, "netns", ns)
			l.run("ip", "-n", l.hub, "link", "set", hub, "master", l.bridge(kind), "up")
			l.run("ip", "-n", ns, "addr", "add", fmt.Sprintf("%s.%d/24", subnet, i+1), "dev", node)
			l.run("ip", "-n", ns, "link", "set", node, "up")
		}
	}
	// Every node reaches the test process over its client link before the
	// lab is handed out (the route bridge is proven by the cluster forming).
	ln, err := net.Listen("tcp", l.httpN+".254:0")
	if err != nil {
		t.Fatalf("listen on the lab's client bridge: %v", err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed
			}
			c.Close()
		}
	}()
	for i := range n {
		dial := fmt.Sprintf("exec 3<>/dev/tcp/%s", strings.Replace(ln.Addr().String(), ":", "/", 1))
		if out, err := exec.Command("ip", "netns", "exec", l.nodes[i], "timeout", "10", "bash", "-c", dial).CombinedOutput(); err != nil {
			t.Skipf("partition test: the lab's network does not carry packets (%s → %s: %v: %s)", l.nodes[i], ln.Addr(), err, out)
		}
	}
	return l
}

func (l *netLab) bridge(kind string) string { return "b" + l.tag + kind }

// port is the hub's end of node i's veth of kind "r" (routes) or "c".
func (l *netLab) port(kind string, i int) string { return fmt.Sprintf("%s%s%dh", kind, l.tag, i+1) }

// RouteIP and HTTPIP are node i's addresses on the two bridges.
func (l *netLab) RouteIP(i int) string { return fmt.Sprintf("%s.%d", l.routeN, i+1) }
func (l *netLab) HTTPIP(i int) string  { return fmt.Sprintf("%s.%d", l.httpN, i+1) }

// Netns is node i's namespace.
func (l *netLab) Netns(i int) string { return l.nodes[i] }

// Cut drops node i's route traffic silently; Heal restores it.
func (l *netLab) Cut(i int)  { l.run("ip", "-n", l.hub, "link", "set", l.port("r", i), "down") }
func (l *netLab) Heal(i int) { l.run("ip", "-n", l.hub, "link", "set", l.port("r", i), "up") }

func (l *netLab) run(args ...string) {
	l.t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		l.t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// remove deletes the namespaces (their veths go with them, and so do the
// peers' ends) and the test process's veth. Runs after the processes in
// the namespaces were killed (cleanups run last registered first).
func (l *netLab) remove() {
	for _, ns := range append(l.nodes, l.hub) {
		// A namespace whose processes are gone is deleted at once; wait a
		// little for the kernel to let go of a dying one.
		deadline := time.Now().Add(10 * time.Second)
		for {
			out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput()
			if err == nil || time.Now().After(deadline) {
				if err != nil {
					l.t.Logf("ip netns del %s: %v: %s", ns, err, out)
				}
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	exec.Command("ip", "link", "del", "h"+l.tag+"c").Run() // gone with the hub already, normally
}
