package integration

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"
)

var sqlCrashRounds = flag.Int("sql.rounds", 2, "SIGKILL rounds of TestSQLCrashProperty (raise for a long run)")

// Random SQL and key-value writes, SIGKILL between rounds: after every
// restart, and after `strata rebuild`, the live tables equal the tables
// replayed from the log (state), a random() column included, and every
// past version replays.
func TestSQLCrashProperty(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills real processes")
	}
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(17, 17))
	ops := []func(k int) string{
		func(k int) string {
			return fmt.Sprintf(`{"query":"INSERT INTO t(id, v, r) VALUES(?, ?, random()) ON CONFLICT(id) DO UPDATE SET v = excluded.v, r = random()","params":[%d,"v%d"]}`, k, k)
		},
		func(k int) string { return fmt.Sprintf(`{"query":"DELETE FROM t WHERE id = ?","params":[%d]}`, k) },
		func(k int) string {
			return fmt.Sprintf(`{"query":"UPDATE t SET v = v || '+' WHERE id < ?","params":[%d]}`, k)
		},
		func(int) string {
			return `{"query":"INSERT INTO n(x, at) VALUES(hex(randomblob(4)), datetime('now'))"}`
		},
		func(k int) string {
			return fmt.Sprintf(`{"query":"DELETE FROM n WHERE rowid %% 3 = ?","params":[%d]}`, k%3)
		},
	}
	ctx := context.Background()
	schema := `{"query":"CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v TEXT, r INTEGER); CREATE TABLE IF NOT EXISTS n(x, at)"}`
	for round := 0; round <= *sqlCrashRounds; round++ {
		p := serve(t, dir)
		checkSQLState(t, p.url, fmt.Sprint("round ", round))
		if round == *sqlCrashRounds {
			if err := p.stop(); err != nil {
				t.Fatal(err)
			}
			break
		}
		if _, err := call(ctx, p.url, "sql", "prop", "exec", json.RawMessage(schema), nil); err != nil {
			t.Fatal(err)
		}
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan int)
		kill := time.Duration(300+rng.IntN(700)) * time.Millisecond // rng is the writer's once it starts
		go func() {
			n := 0
			for runCtx.Err() == nil {
				body := ops[rng.IntN(len(ops))](rng.IntN(20))
				if _, err := call(runCtx, p.url, "sql", "prop", "exec", json.RawMessage(body), nil); err == nil {
					n++
				}
				call(runCtx, p.url, "kv", "prop", "put", map[string]any{"key": fmt.Sprint("k", rng.IntN(50)), "value": n}, nil)
			}
			done <- n
		}()
		time.Sleep(kill)
		p.kill()
		cancel()
		t.Logf("round %d: %d SQL writes acknowledged before SIGKILL", round, <-done)
	}
	out, err := exec.Command(strataBinary(t), "rebuild", "--data", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("rebuild: %v\n%s", err, out)
	}
	p := serve(t, dir)
	checkSQLState(t, p.url, "after rebuild")
	last := checkSQLState(t, p.url, "after rebuild")
	for v := 1; v <= last; v++ {
		code, body := get(t, fmt.Sprintf("%s/v1/objects/sql/prop/state?version=%d", p.url, v))
		if code != http.StatusOK {
			t.Fatalf("state at version %d: %d %s", v, code, body)
		}
	}
	p.stop()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, b.String()
}

// checkSQLState compares the live tables with the tables replayed from the
// log, and returns the object's version.
func checkSQLState(t *testing.T, url, when string) int {
	t.Helper()
	code, body := get(t, url+"/v1/objects/sql/prop/state")
	if code == http.StatusBadRequest {
		return 0 // no events yet
	}
	if code != http.StatusOK {
		t.Fatalf("%s: state: %d %s", when, code, body)
	}
	var st struct {
		Version int `json:"version"`
		Tables  []struct {
			Name   string  `json:"name"`
			RowIDs []int64 `json:"rowids"`
			Rows   [][]any `json:"rows"`
		} `json:"tables"`
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	for _, tb := range st.Tables {
		var live struct {
			Rows [][]any `json:"rows"`
		}
		if _, err := call(context.Background(), url, "sql", "prop", "exec", map[string]string{"query": "SELECT rowid, * FROM " + tb.Name + " ORDER BY rowid"}, &live); err != nil {
			t.Fatalf("%s: live %s: %v", when, tb.Name, err)
		}
		replayed := make([][]any, len(tb.Rows))
		for i, r := range tb.Rows {
			replayed[i] = append([]any{float64(tb.RowIDs[i])}, r...)
		}
		if len(live.Rows) == 0 {
			live.Rows = [][]any{}
		}
		if !reflect.DeepEqual(live.Rows, replayed) {
			t.Fatalf("%s: table %s live %v\nreplayed %v", when, tb.Name, live.Rows, replayed)
		}
	}
	return st.Version
}
