package integration

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// No Docker engine runs where the tests run, so docker-compose.yml and the
// Dockerfile are kept correct by construction: the compose file's nodes
// must be a consistent three-node cluster (routes naming every node's
// route port, the published port the gateway's, the volume the data
// folder), every flag and STRATA_* variable they use must be one
// `strata serve` knows, and the nodes' flags (with the container
// addresses swapped for free ports on 127.0.0.1) must form a cluster of
// real processes that serves writes through every node.

type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Build       any               `yaml:"build"`
	Image       string            `yaml:"image"`
	DependsOn   map[string]any    `yaml:"depends_on"`
	Healthcheck map[string]any    `yaml:"healthcheck"`
	Tmpfs       []string          `yaml:"tmpfs"`
	Hostname    string            `yaml:"hostname"`
	Command     []string          `yaml:"command"`
	Ports       []string          `yaml:"ports"`
	Volumes     []string          `yaml:"volumes"`
	Environment map[string]string `yaml:"environment"`
}

// composeNode is one service's serve flags, parsed.
type composeNode struct {
	service string
	flags   map[string]string // --name → value ("true" for a bare --cluster)
	order   []string          // flag names as given
}

// secretsService is the compose file's one-shot service that makes the
// cluster's secrets before the nodes start.
const secretsService = "secrets"

// secretsVolume, mounted at secretsDir, holds the cluster's secrets.
const (
	secretsVolume = "secrets"
	secretsDir    = "/secrets"
)

// addressFlags are the flags whose values name container addresses; the
// local run replaces them.
var addressFlags = []string{"--data", "--http", "--cluster-listen", "--routes"}

func readCompose(t *testing.T) (composeFile, []composeNode) {
	t.Helper()
	b, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var f composeFile
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	var nodes []composeNode
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range f.Services {
			if !yield(k) {
				return
			}
		}
	}) {
		s := f.Services[name]
		if name == secretsService {
			continue
		}
		if len(s.Command) == 0 || s.Command[0] != "serve" {
			t.Fatalf("service %s: command %q does not run serve", name, s.Command)
		}
		n := composeNode{service: name, flags: map[string]string{}}
		args := s.Command[1:]
		for i := 0; i < len(args); i++ {
			a := args[i]
			if !strings.HasPrefix(a, "--") {
				t.Fatalf("service %s: %q is not a flag", name, a)
			}
			if k, v, ok := strings.Cut(a, "="); ok {
				n.flags[k], n.order = v, append(n.order, k)
				continue
			}
			if a == "--cluster" || i+1 == len(args) || strings.HasPrefix(args[i+1], "--") {
				n.flags[a], n.order = "true", append(n.order, a)
				continue
			}
			n.flags[a], n.order = args[i+1], append(n.order, a)
			i++
		}
		nodes = append(nodes, n)
	}
	return f, nodes
}

// TestComposeFileIsACluster checks docker-compose.yml's three nodes
// against each other and against `strata serve`'s flags, and the
// Dockerfile against the binary it must build.
func TestComposeFileIsACluster(t *testing.T) {
	f, nodes := readCompose(t)
	if len(nodes) != 3 {
		t.Fatalf("docker-compose.yml has %d services, want the 3 nodes", len(nodes))
	}
	bin := strataBinary(t)
	help, _ := exec.Command(bin, "serve", "-h").CombinedOutput()
	known := func(flag string) bool { return strings.Contains(string(help), "  "+flag+" (") }

	var wantRoutes []string
	hostPorts := map[string]bool{}
	for _, n := range nodes {
		_, port, err := net.SplitHostPort(n.flags["--cluster-listen"])
		if err != nil {
			t.Fatalf("%s: --cluster-listen %q: %v", n.service, n.flags["--cluster-listen"], err)
		}
		wantRoutes = append(wantRoutes, n.service+":"+port)
	}
	for _, n := range nodes {
		s := f.Services[n.service]
		for _, flag := range n.order {
			if !known(flag) {
				t.Errorf("%s: strata serve has no flag %s", n.service, flag)
			}
		}
		if n.flags["--cluster"] != "true" {
			t.Errorf("%s: not --cluster", n.service)
		}
		if n.flags["--node-name"] != n.service || s.Hostname != n.service {
			t.Errorf("%s: --node-name %q, hostname %q: want both the service's name (the routes use it)", n.service, n.flags["--node-name"], s.Hostname)
		}
		routes := strings.Split(n.flags["--routes"], ",")
		if !slices.Equal(slices.Sorted(slices.Values(routes)), wantRoutes) {
			t.Errorf("%s: --routes %v, want every node's route address %v", n.service, routes, wantRoutes)
		}
		host, port, err := net.SplitHostPort(n.flags["--http"])
		if err != nil || host != "0.0.0.0" {
			t.Errorf("%s: --http %q must listen on every interface of the container", n.service, n.flags["--http"])
		}
		if h, _, _ := net.SplitHostPort(n.flags["--cluster-listen"]); h != "0.0.0.0" {
			t.Errorf("%s: --cluster-listen %q must listen on every interface of the container", n.service, n.flags["--cluster-listen"])
		}
		if len(s.Ports) != 1 || !strings.HasSuffix(s.Ports[0], ":"+port) {
			t.Errorf("%s: ports %v must publish the gateway's port %s", n.service, s.Ports, port)
		} else if hp := strings.TrimSuffix(s.Ports[0], ":"+port); hostPorts[hp] {
			t.Errorf("%s: host port %s published twice", n.service, hp)
		} else {
			hostPorts[hp] = true
		}
		data := n.flags["--data"]
		if len(s.Volumes) != 2 {
			t.Errorf("%s: volumes %v: want one volume for its data, then the secrets", n.service, s.Volumes)
		} else if vol, dir, _ := strings.Cut(s.Volumes[0], ":"); dir != data || f.Volumes == nil {
			t.Errorf("%s: volume %q is not mounted at --data %q", n.service, s.Volumes[0], data)
		} else if _, ok := f.Volumes[vol]; !ok {
			t.Errorf("%s: volume %q is not declared", n.service, vol)
		} else {
			for _, o := range nodes {
				if o.service != n.service && slices.Contains(f.Services[o.service].Volumes, s.Volumes[0]) {
					t.Errorf("%s and %s share volume %s", n.service, o.service, vol)
				}
			}
		}
		if pw := s.Environment["STRATA_NATS_PASSWORD_FILE"]; pw != secretsDir+"/nats.password" {
			t.Errorf("%s: STRATA_NATS_PASSWORD_FILE = %q: want the password the secrets service makes", n.service, pw)
		}
		if _, ok := s.Environment["STRATA_NATS_PASSWORD"]; ok {
			t.Errorf("%s: the password is in the environment: the nodes read the secrets volume", n.service)
		}
		if !slices.Contains(s.Volumes, secretsVolume+":"+secretsDir+":ro") {
			t.Errorf("%s: volumes %v: want the secrets volume read-only at %s", n.service, s.Volumes, secretsDir)
		}
		if _, ok := s.DependsOn[secretsService]; !ok {
			t.Errorf("%s: does not depend on the secrets service", n.service)
		}
		if hc, _ := s.Healthcheck["test"].([]any); len(hc) < 3 || hc[1] != "/strata" || hc[2] != "health" {
			t.Errorf("%s: healthcheck %v: want /strata health (the image has no shell)", n.service, s.Healthcheck["test"])
		}
		for k := range s.Environment {
			if !known("--" + strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(k, "STRATA_")), "_", "-")) {
				t.Errorf("%s: strata serve reads no %s", n.service, k)
			}
		}
		if s.Build == nil {
			t.Errorf("%s: no build: the image comes from the Dockerfile", n.service)
		}
	}

	sec, ok := f.Services[secretsService]
	if !ok {
		t.Fatalf("docker-compose.yml has no %s service", secretsService)
	}
	if want := []string{"secrets", "init", "--dir", secretsDir}; !slices.Equal(sec.Command, want) {
		t.Errorf("%s: command %q, want %q", secretsService, sec.Command, want)
	}
	if !slices.Equal(sec.Volumes, []string{secretsVolume + ":" + secretsDir}) {
		t.Errorf("%s: volumes %v, want the secrets volume at %s", secretsService, sec.Volumes, secretsDir)
	}
	if !slices.Equal(sec.Tmpfs, []string{"/data"}) {
		t.Errorf("%s: tmpfs %v: want /data, or each down leaves the image's /data volume behind", secretsService, sec.Tmpfs)
	}
	if sec.Image != f.Services[nodes[0].service].Image || sec.Build == nil {
		t.Errorf("%s: image %q: want the nodes' image, built", secretsService, sec.Image)
	}

	df, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"CGO_ENABLED=0", "./cmd/strata", `ENTRYPOINT ["/strata"]`, "USER nonroot", "nonroot:nonroot /out/data /data", "nonroot:nonroot /out/secrets " + secretsDir} {
		if !strings.Contains(string(df), want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	sdf, err := os.ReadFile("../Dockerfile.scratch")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"\nFROM scratch\n", "CGO_ENABLED=0", `ENTRYPOINT ["/strata"]`, "USER 65532:65532", "ca-certificates.crt /etc/ssl/certs/", "65532:65532 build/scratch/data /data", "65532:65532 build/scratch/secrets " + secretsDir} {
		if !strings.Contains(string(sdf), want) {
			t.Errorf("Dockerfile.scratch lacks %q", want)
		}
	}
	if n := strings.Count(string(df), "\nFROM "); n != 2 {
		t.Errorf("Dockerfile has %d stages, want 2 (build, then the minimal image)", n)
	}
	for _, m := range regexp.MustCompile(`STRATA_[A-Z_]+`).FindAllString(string(df), -1) {
		if !known("--" + strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(m, "STRATA_")), "_", "-")) {
			t.Errorf("Dockerfile: strata serve reads no %s", m)
		}
	}
}

// TestComposeNodesFormACluster runs the compose file's three nodes as
// processes: each with its own flags from the file, the container
// addresses (--data, --http, --cluster-listen, --routes) replaced by the
// harness's folders and free ports on 127.0.0.1, and the password in
// STRATA_NATS_PASSWORD as compose passes it. Writes through every node
// must chain on one object.
func TestComposeNodesFormACluster(t *testing.T) {
	_, nodes := readCompose(t)
	own := make([][]string, len(nodes))
	for i, n := range nodes {
		if want := fmt.Sprintf("n%d", i+1); n.service != want {
			t.Fatalf("service %d is %s: the harness names nodes n1, n2, n3", i, n.service)
		}
		for _, flag := range n.order {
			if slices.Contains(addressFlags, flag) {
				continue
			}
			own[i] = append(own[i], flag+"="+n.flags[flag])
		}
	}
	c := startClusterNodes(t, own)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	want := 0
	for round := 0; round < 2; round++ {
		for i := range nodes {
			var out struct{ Value int }
			code, err := call(ctx, c.URL(i), "counter", "compose", "increment", nil, &out)
			if err != nil || code != 200 {
				t.Fatalf("increment through %s: %d %v\n%s", c.Name(i), code, err, c.Logs(i))
			}
			want++
			if out.Value != want {
				t.Fatalf("increment through %s = %d, want %d", c.Name(i), out.Value, want)
			}
		}
	}
	v, err := c.Status(0)
	if err != nil || len(v.Nodes) != 3 {
		t.Fatalf("GET /v1/cluster: %+v %v", v, err)
	}
}
