package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strata-objects/strata/objects"
)

// The bank test's size: CI runs the defaults (300 transfers: about 40 s
// on the shared 2-core machine); `go test ./integration -run
// TestBankTransfersAsMessages -bank.transfers 10000 -timeout 60m` runs
// the full size.
var (
	bankAccounts  = flag.Int("bank.accounts", 100, "accounts in TestBankTransfersAsMessages")
	bankTransfers = flag.Int("bank.transfers", 300, "durable transfers in TestBankTransfersAsMessages")
	bankKills     = flag.Int("bank.kills", 3, "SIGKILLs of the node during TestBankTransfersAsMessages")
)

const bankOpening = 1_000_000 // each account's opening balance, in cents

// TestBankTransfersAsMessages: accounts send each other money as durable
// messages with replies (account.send-transfer: the debit and the message
// are one event; the deposit is the message, its answer a reply turn),
// and the node is SIGKILLed several times during the run. At the end: the
// total is conserved, every transfer whose debit is in the log was
// deposited exactly once and answered exactly once (checked from both
// objects' histories: each message the senders' events hold is the
// caller of exactly one deposit turn, and settled by exactly one reply
// turn), none is pending, and each sender's messages to a target were
// applied in send order.
func TestBankTransfersAsMessages(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills real processes")
	}
	dir := t.TempDir()
	p := serve(t, dir)
	ctx := context.Background()
	names := make([]string, *bankAccounts)
	for i := range names {
		names[i] = fmt.Sprintf("acct-%03d", i)
		if _, err := call(ctx, p.url, "account", names[i], "deposit", map[string]int64{"amount": bankOpening}, nil); err != nil {
			t.Fatal(err)
		}
	}
	rng := rand.New(rand.NewPCG(16, 2))
	type transfer struct {
		from, to string
		amount   int64
	}
	work := make(chan transfer, *bankTransfers)
	for range *bankTransfers {
		from, to := rng.IntN(len(names)), rng.IntN(len(names)-1)
		if to >= from {
			to++
		}
		work <- transfer{names[from], names[to], 1 + rng.Int64N(100)}
	}
	close(work)
	var acked, unknown atomic.Int64
	perRound := *bankTransfers / (*bankKills + 1)
	for round := 0; len(work) > 0; round++ {
		// Workers send until the node dies under them (a transfer in
		// flight then is unknown: its debit may be in the log).
		var roundAcked atomic.Int64
		var wg sync.WaitGroup
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for tr := range work {
					status, _, body, err := rpc(ctx, p.url, "account", tr.from, "send-transfer", map[string]any{"to": tr.to, "amount": tr.amount})
					switch {
					case err != nil || status >= 500:
						unknown.Add(1)
						return
					case status == http.StatusOK:
						acked.Add(1)
						roundAcked.Add(1)
					default:
						t.Errorf("send-transfer %s -> %s: %d %s", tr.from, tr.to, status, body)
					}
				}
			}()
		}
		if round < *bankKills {
			// Kill mid-load: messages are in flight, pending and half
			// settled when the process dies.
			killAfter := int64(perRound/3 + rng.IntN(perRound/3+1))
			for roundAcked.Load() < killAfter && len(work) > 0 {
				time.Sleep(time.Millisecond)
			}
			p.kill()
		}
		wg.Wait()
		if round < *bankKills {
			t.Logf("round %d: SIGKILL after %d transfers acknowledged in the round", round, roundAcked.Load())
			p = serve(t, dir)
		}
	}
	// Every outbox empties: the restarted node found what was pending.
	deadline := time.Now().Add(5 * time.Minute)
	for {
		pending := 0
		for _, name := range names {
			var out struct {
				Messages []json.RawMessage `json:"messages"`
			}
			if _, err := getJSON(p.url+"/v1/objects/account/"+name+"/outbox", &out); err != nil {
				t.Fatal(err)
			}
			pending += len(out.Messages)
		}
		if pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d messages still pending after 5 minutes", pending)
		}
		time.Sleep(200 * time.Millisecond)
	}

	n := checkBank(t, p.url, names, acked.Load(), unknown.Load())
	t.Logf("%d accounts, %d transfers asked, %d acknowledged, %d unknown (in flight at a SIGKILL), %d in the log, %d SIGKILLs: total conserved, each applied and answered once",
		len(names), *bankTransfers, acked.Load(), unknown.Load(), n, *bankKills)
	if err := p.stop(); err != nil {
		t.Fatalf("graceful stop: %v", err)
	}
}

// checkBank waits until every transfer in the senders' logs is deposited
// and answered (the accounts' counters agree and the total is back), then
// checks both histories: each message a sender's events hold is the
// caller of exactly one deposit turn on its target and settled by exactly
// one reply turn on its sender, no deposit names a message no sender
// sent, and each target applied each sender's messages in send order. It
// returns how many transfers the logs hold.
func checkBank(t *testing.T, url string, names []string, acked, unknown int64) int {
	t.Helper()
	ctx := context.Background()
	var total, credits, credited int64
	settled := waitFor(5*time.Minute, func() bool {
		total, credits, credited = 0, 0, 0
		for _, name := range names {
			var c struct {
				Balance, Credits, Credited, Refused int64
			}
			if _, err := call(ctx, url, "account", name, "counts", nil, &c); err != nil {
				t.Logf("counts of %s: %v", name, err)
				return false
			}
			total += c.Balance
			credits += c.Credits
			credited += c.Credited
			if c.Refused != 0 {
				t.Errorf("%s: %d deposits refused", name, c.Refused)
			}
		}
		return total == int64(len(names))*bankOpening && credits == credited
	})
	if !settled {
		t.Fatalf("after 5 minutes: total %d (want %d), %d deposits, %d answers: messages still pending", total, int64(len(names))*bankOpening, credits, credited)
	}
	// Both histories.
	type pos struct {
		sender      string
		version     uint64
		turn, index int
	}
	byID := map[string]string{} // account id -> name
	for _, name := range names {
		byID[objects.IDFromName("account", name).String()] = name
	}
	sends := map[pos]string{}       // message -> its target's id
	deposits := map[pos]int{}       // message -> deposit turns that name it
	replies := map[pos]int{}        // message -> reply turns (settling it) on the sender
	settles := map[pos]int{}        // message -> settles on the sender
	lastSeen := map[[2]string]pos{} // (target, sender) -> the last deposit's message
	for _, name := range names {
		err := eachHistoryLine(ctx, url+"/v1/objects/account/"+name+"/history", func(line historyLine) {
			for ti, turn := range line.Turns {
				for i, s := range turn.Sends {
					sends[pos{name, line.Version, ti, i}] = s.ID
				}
				for _, s := range turn.Settles {
					if !s.Retry && s.Dead == "" {
						settles[pos{name, s.Version, s.Turn, s.Index}]++
					}
					if s.Dead != "" {
						t.Errorf("%s: a dead letter: %+v", name, s)
					}
				}
				c := turn.Caller
				switch {
				case c == nil:
				case c.Kind == "message":
					k := pos{byID[c.ID], c.Version, c.Turn, c.Index}
					if k.sender == "" {
						t.Errorf("%s: a deposit from an unknown sender %s", name, c.ID)
					}
					deposits[k]++
					if last, ok := lastSeen[[2]string{name, c.ID}]; ok && !lessPos(last.version, last.turn, last.index, c.Version, c.Turn, c.Index) {
						t.Errorf("%s applied %+v after %+v: out of send order", name, k, last)
					}
					lastSeen[[2]string{name, c.ID}] = k
				case c.Kind == "reply":
					replies[pos{name, c.Version, c.Turn, c.Index}]++
				}
			}
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if total != int64(len(names))*bankOpening {
		t.Errorf("total %d, want %d: money was made or lost", total, int64(len(names))*bankOpening)
	}
	if int64(len(sends)) < acked || int64(len(sends)) > acked+unknown {
		t.Errorf("%d messages in the senders' logs; %d transfers acknowledged, %d unknown", len(sends), acked, unknown)
	}
	for k := range sends {
		if deposits[k] != 1 || replies[k] != 1 || settles[k] != 1 {
			t.Errorf("message %+v: %d deposits, %d replies, %d settles; want 1 each", k, deposits[k], replies[k], settles[k])
		}
	}
	for k, n := range deposits {
		if _, ok := sends[k]; !ok {
			t.Errorf("%d deposits of %+v, which no sender's log holds", n, k)
		}
	}
	if credits != int64(len(sends)) || credited != int64(len(sends)) {
		t.Errorf("%d credits and %d answers counted, want %d each", credits, credited, len(sends))
	}
	return len(sends)
}

func lessPos(v1 uint64, t1, i1 int, v2 uint64, t2, i2 int) bool {
	if v1 != v2 {
		return v1 < v2
	}
	if t1 != t2 {
		return t1 < t2
	}
	return i1 < i2
}

type historyLine struct {
	Version uint64 `json:"version"`
	Turns   []struct {
		Caller *struct {
			ID      string `json:"id"`
			Version uint64 `json:"version"`
			Turn    int    `json:"turn"`
			Index   int    `json:"index"`
			Kind    string `json:"kind"`
		} `json:"caller"`
		Sends []struct {
			ID string `json:"id"`
		} `json:"sends"`
		Settles []struct {
			Version uint64 `json:"version"`
			Turn    int    `json:"turn"`
			Index   int    `json:"index"`
			Dead    string `json:"dead"`
			Retry   bool   `json:"retry"`
		} `json:"settles"`
	} `json:"turns"`
}

// eachHistoryLine reads an object's whole history (NDJSON).
func eachHistoryLine(ctx context.Context, u string, fn func(historyLine)) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d", u, resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var line historyLine
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			return fmt.Errorf("history line %q: %w", sc.Text(), err)
		}
		fn(line)
	}
	return sc.Err()
}

// TestBankMessagesSurviveOwnerKill: the bank test in a three-node cluster,
// with the node that owns a share of the senders SIGKILLed mid-load and
// never restarted. The other nodes take its objects over and deliver what
// its senders' logs hold pending (the takeover scan, the sweep, or their
// next activation): every transfer is still deposited and answered exactly
// once, in order, and the total is conserved.
func TestBankMessagesSurviveOwnerKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills real processes")
	}
	c := startCluster(t, 3)
	ctx := context.Background()
	const victim = 2
	names := make([]string, 30)
	var victims []string
	for i := range names {
		names[i] = fmt.Sprintf("cacct-%02d", i)
		status, node, body, err := rpc(ctx, c.URL(0), "account", names[i], "deposit", map[string]int64{"amount": bankOpening})
		if err != nil || status != http.StatusOK {
			t.Fatalf("deposit to %s: %d %s %v", names[i], status, body, err)
		}
		if node == c.Name(victim) {
			victims = append(victims, names[i])
		}
	}
	if len(victims) == 0 {
		t.Fatalf("%s owns none of %d accounts", c.Name(victim), len(names))
	}
	rng := rand.New(rand.NewPCG(16, 3))
	type transfer struct {
		from, to string
		amount   int64
	}
	const transfers = 300
	work := make(chan transfer, transfers)
	for i := range transfers {
		from := names[rng.IntN(len(names))]
		if i%2 == 0 {
			from = victims[rng.IntN(len(victims))] // half from the victim's senders
		}
		to := names[rng.IntN(len(names))]
		for to == from {
			to = names[rng.IntN(len(names))]
		}
		work <- transfer{from, to, 1 + rng.Int64N(100)}
	}
	close(work)
	var acked, unknown atomic.Int64
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			url := c.URL(w % 2) // never the victim
			for tr := range work {
				status, _, body, err := rpc(ctx, url, "account", tr.from, "send-transfer", map[string]any{"to": tr.to, "amount": tr.amount})
				switch {
				case err != nil || status >= 500:
					unknown.Add(1) // the owner died under it: its debit may be in the log
				case status == http.StatusOK:
					acked.Add(1)
				default:
					t.Errorf("send-transfer %s -> %s: %d %s", tr.from, tr.to, status, body)
				}
			}
		}()
	}
	for acked.Load() < transfers/3 && len(work) > 0 {
		time.Sleep(time.Millisecond)
	}
	c.Kill(victim)
	t.Logf("SIGKILL of %s (owner of %d of %d accounts) after %d transfers acknowledged", c.Name(victim), len(victims), len(names), acked.Load())
	wg.Wait()
	n := checkBank(t, c.URL(0), names, acked.Load(), unknown.Load())
	t.Logf("%d transfers asked, %d acknowledged, %d unknown, %d in the log: total conserved, each applied and answered once", transfers, acked.Load(), unknown.Load(), n)
}

// TestMessageSettleLostToKillRedelivers: a delivered plain message
// (relay hop by message, Send without reply) is settled lazily: its
// Settle waits in the sender's memory for the sender's next event (here
// --settle-delay is an hour, so only a next event writes it). SIGKILL in
// that window loses the Settle; the restarted node finds the message
// pending in the sender's log, delivers it again, and the target answers
// from its per-sender record without running it: every hop counted once,
// every message applied once and settled once (from both histories).
func TestMessageSettleLostToKillRedelivers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills real processes")
	}
	const sends = 4
	dir := t.TempDir()
	p := serve(t, dir, "--settle-delay", "1h")
	ctx := context.Background()
	hops := func(name string) int64 {
		var out struct{ Hops int64 }
		if _, err := call(ctx, p.url, "relay", name, "get", nil, &out); err != nil {
			t.Fatal(err)
		}
		return out.Hops
	}
	listed := func(name string) int {
		var out struct {
			Messages []json.RawMessage `json:"messages"`
		}
		if _, err := getJSON(p.url+"/v1/objects/relay/"+name+"/outbox", &out); err != nil {
			t.Fatal(err)
		}
		return len(out.Messages)
	}
	// pending counts the messages name's log holds unsettled: the listing
	// leaves out a delivered message whose Settle is only noted.
	pending := func(name string) int {
		n := 0
		if err := eachHistoryLine(ctx, p.url+"/v1/objects/relay/"+name+"/history", func(line historyLine) {
			for _, turn := range line.Turns {
				n += len(turn.Sends) - len(turn.Settles)
			}
		}); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for i := range sends {
		if _, err := call(ctx, p.url, "relay", "lazy-a", "hop", map[string]any{"path": []string{"lazy-b"}, "by": "message"}, nil); err != nil {
			t.Fatal(err)
		}
		if !waitFor(time.Minute, func() bool { return hops("lazy-b") == int64(i+1) }) {
			t.Fatalf("lazy-b counted %d hops, want %d", hops("lazy-b"), i+1)
		}
	}
	// Every message ran on lazy-b; at least the last one's Settle is
	// only in lazy-a's memory, so its log says it is pending, and the
	// listing, which knows it was delivered, does not list it.
	before := pending("lazy-a")
	if before < 1 {
		t.Fatal("lazy-a's log has every message settled: no Settle was waiting")
	}
	if !waitFor(time.Minute, func() bool { return listed("lazy-a") == 0 }) {
		t.Fatalf("lazy-a's outbox lists %d delivered messages", listed("lazy-a"))
	}
	if n := pending("lazy-a"); n != before {
		t.Fatalf("lazy-a's log has %d messages pending, then %d, with no event in between", before, n)
	}
	p.kill()
	p = serve(t, dir, "--settle-delay", "50ms")
	// The restarted node loads lazy-a (it has pending messages), delivers
	// them again and settles them.
	if !waitFor(time.Minute, func() bool { return pending("lazy-a") == 0 }) {
		t.Fatalf("lazy-a's log still has %d messages pending after the restart", pending("lazy-a"))
	}
	if n := hops("lazy-b"); n != sends {
		t.Fatalf("lazy-b counted %d hops, want %d: a redelivery ran again", n, sends)
	}
	type pos struct {
		version     uint64
		turn, index int
	}
	sent, settled, applied := map[pos]bool{}, map[pos]int{}, map[pos]int{}
	if err := eachHistoryLine(ctx, p.url+"/v1/objects/relay/lazy-a/history", func(line historyLine) {
		for ti, turn := range line.Turns {
			for i := range turn.Sends {
				sent[pos{line.Version, ti, i}] = true
			}
			for _, s := range turn.Settles {
				settled[pos{s.Version, s.Turn, s.Index}]++
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := eachHistoryLine(ctx, p.url+"/v1/objects/relay/lazy-b/history", func(line historyLine) {
		for _, turn := range line.Turns {
			if c := turn.Caller; c != nil && c.Kind == "message" {
				applied[pos{c.Version, c.Turn, c.Index}]++
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	if len(sent) != sends {
		t.Fatalf("lazy-a's log holds %d messages, want %d", len(sent), sends)
	}
	for k := range sent {
		if settled[k] != 1 || applied[k] != 1 {
			t.Errorf("message %+v: settled %d times, applied %d times; want once each", k, settled[k], applied[k])
		}
	}
	t.Logf("%d messages, %d pending at the SIGKILL: redelivered, each applied and settled once", sends, before)
	if err := p.stop(); err != nil {
		t.Fatalf("graceful stop: %v", err)
	}
}
