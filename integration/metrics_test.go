package integration

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape reads GET /metrics with token and parses it.
func scrape(t *testing.T, base, token string) map[string]*dto.MetricFamily {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /metrics: %d %s", resp.StatusCode, b)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// value sums the samples of family name whose labels include want (a
// counter's or gauge's value, a histogram's count).
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	f, ok := fams[name]
	if !ok {
		return -1
	}
	sum := 0.0
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum
}

// A real node under real load: /metrics needs a read token, and after the
// load the series moved by what was done; labels stay bounded (an unknown
// class or method is "other", never its name).
func TestMetricsScrape(t *testing.T) {
	dir := t.TempDir()
	p := serve(t, dir, "--auth=on")
	admin := readAdminToken(t, dir)
	read := makeToken(t, p.url, dir, "read", "")
	caller := makeToken(t, p.url, dir, "call", "")

	if code, body := authDo(t, "", "GET", p.url+"/metrics", ""); code != 401 {
		t.Fatalf("/metrics without a token: %d %s", code, body)
	}
	if code, body := authDo(t, caller, "GET", p.url+"/metrics", ""); code != 403 {
		t.Fatalf("/metrics with a call token: %d %s", code, body)
	}
	before := scrape(t, p.url, read)

	const n = 20
	for i := range n {
		if code, body := authDo(t, caller, "POST", fmt.Sprintf("%s/v1/objects/counter/m%d/rpc/increment", p.url, i%4), `{"by":1}`); code != 200 {
			t.Fatalf("increment: %d %s", code, body)
		}
	}
	if code, _ := authDo(t, caller, "POST", p.url+"/v1/objects/counter/m0/rpc/no-such-method", `{}`); code != 404 {
		t.Fatalf("unknown method: %d", code)
	}
	if code, _ := authDo(t, caller, "POST", p.url+"/v1/objects/secret-class-name/x/rpc/get", `{}`); code != 404 {
		t.Fatalf("unknown class: %d", code)
	}
	if code, body := authDo(t, caller, "PUT", p.url+"/v1/objects/session/s1/alarm", `{"in":"0s"}`); code != 200 {
		t.Fatalf("set alarm: %d %s", code, body)
	}

	var after map[string]*dto.MetricFamily
	deadline := time.Now().Add(30 * time.Second)
	for {
		after = scrape(t, p.url, admin)
		if value(after, "strata_alarms_total", map[string]string{"kind": "fired"}) >= 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	moved := func(name string, labels map[string]string, atLeast float64) {
		t.Helper()
		b, a := max(value(before, name, labels), 0), value(after, name, labels)
		if a-b < atLeast {
			t.Errorf("%s%v moved from %v to %v, want at least +%v", name, labels, b, a, atLeast)
		}
	}
	moved("strata_http_requests_total", map[string]string{"class": "counter", "action": "rpc", "method": "increment", "code": "200"}, n)
	moved("strata_http_requests_total", map[string]string{"class": "counter", "method": "other", "code": "404"}, 1)
	moved("strata_http_requests_total", map[string]string{"class": "other", "code": "404"}, 1)
	moved("strata_http_request_duration_seconds", map[string]string{"class": "counter", "action": "rpc"}, n)
	moved("strata_turn_duration_seconds", map[string]string{"class": "counter"}, n)
	moved("strata_events_appended_total", nil, n)
	moved("strata_event_bytes_appended_total", nil, 100*n)
	moved("strata_append_duration_seconds", nil, 1)
	moved("strata_append_group_events", nil, 1)
	moved("strata_activations_total", map[string]string{"class": "counter"}, 4)
	moved("strata_jetstream_stream_messages", map[string]string{"kind": "log"}, n)
	moved("strata_alarms_total", map[string]string{"kind": "published"}, 1)
	moved("strata_alarms_total", map[string]string{"kind": "fired"}, 1)
	moved("strata_alarm_lateness_seconds", nil, 1)
	if v := value(after, "strata_activations_live", nil); v < 4 {
		t.Errorf("strata_activations_live = %v, want at least 4", v)
	}
	if v := value(after, "strata_cluster_lease", nil); v != 1 {
		t.Errorf("strata_cluster_lease = %v alone, want 1", v)
	}
	// The Grafana dashboard asks only for series the node serves.
	dash, err := os.ReadFile("../docs/grafana-strata.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range regexp.MustCompile(`strata_[a-z_]+`).FindAllString(string(dash), -1) {
		base := name
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(name, suf); ok && after[b] != nil {
				base = b
			}
		}
		if after[base] == nil {
			t.Errorf("docs/grafana-strata.json asks for %s, which /metrics does not serve", name)
		}
	}
	for _, f := range after {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if strings.Contains(l.GetValue(), "secret-class-name") || strings.Contains(l.GetValue(), "no-such-method") || strings.HasPrefix(l.GetValue(), "m0") {
					t.Errorf("%s has an unbounded label %s=%q", f.GetName(), l.GetName(), l.GetValue())
				}
			}
		}
	}
}

// readAdminToken is the first admin token a node with --auth=on wrote.
func readAdminToken(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// makeToken creates a token of scope with the CLI beside the node.
func makeToken(t *testing.T, base, dir, scope, classes string) string {
	t.Helper()
	args := []string{"token", "create", "--url", base, "--data", dir, "--scope", scope, "--name", scope + "-test"}
	if classes != "" {
		args = append(args, "--classes", classes)
	}
	out, err := strataCmd(t, nil, args...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}
