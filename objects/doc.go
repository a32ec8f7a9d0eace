// Package objects is Strata's runtime: classes, ids, activations, turns,
// the storage API, group commit, the output gate, fencing and eviction.
//
// # Writing a class
//
// A class is an ordinary Go type. Its exported methods shaped
// func(ctx *objects.Ctx, in In) (Out, error) are its RPC methods (the input
// and the output are optional); its fields are the object's in-memory state
// while it is active:
//
//	type Ledger struct{ balance int64 } // in memory while active
//
//	type Amount struct{ Cents int64 `json:"cents"` }
//
//	func (l *Ledger) Deposit(ctx *objects.Ctx, in Amount) (Amount, error) {
//		if in.Cents <= 0 {
//			return Amount{}, objects.Errorf(400, "bad_amount", "deposit %d: must be positive", in.Cents)
//		}
//		bal, _, err := objects.GetJSON[int64](ctx.Storage(), "balance")
//		if err != nil {
//			return Amount{}, err
//		}
//		bal += in.Cents
//		if err := objects.PutJSON(ctx.Storage(), "balance", bal); err != nil {
//			return Amount{}, err
//		}
//		return Amount{Cents: bal}, nil
//	}
//
//	var LedgerClass = objects.Define("ledger", func() *Ledger { return &Ledger{} })
//
// It is then served as POST /v1/objects/ledger/{name}/rpc/deposit. Optional
// interfaces add entry points: Initer (Init runs before the first turn of an
// activation), Fetcher (raw HTTP) and Alarmer (alarms, below). A user's
// server binary is cli.Main(append(classes.All(), LedgerClass)...): the
// same program as strata itself.
//
// # The write path
//
//  1. A request becomes a turn in the activation's bounded mailbox. Turns
//     run one at a time, under the activation's drive lock, so a handler
//     never races with another handler of the same object and needs no
//     locks. A request that finds the activation idle and its mailbox
//     empty runs on the caller's goroutine, and a lone event is appended
//     from there too: no hand-off to the activation's goroutine and back
//     (activation.go).
//  2. A turn's writes go to its write set; its reads see the write set,
//     then the overlay of earlier unprojected writes, then the Badger
//     snapshot. Storage.Transaction nests a write set that an error
//     discards.
//  3. When the handler returns, its write set is committed: the turn is an
//     implicit transaction. An error or a panic discards it. A panic also
//     resets the activation (its in-memory fields are dropped); the process
//     lives on.
//  4. Group commit: at most one append is in flight per object. Turns that
//     finish meanwhile are coalesced, in order, into the next event, so a
//     busy object writes fewer, larger events instead of queueing on the
//     log's latency. The next turn may run before the previous event is
//     acknowledged and sees its writes.
//  5. Output gate: a response (or a Fetch body) leaves only after the event
//     holding its writes is acknowledged by JetStream. A turn that wrote
//     nothing still waits for any earlier unacknowledged event, because it
//     may have read from it. So a client never sees data that a crash could
//     take back.
//  6. Fencing: every append expects the object's subject to end at the last
//     sequence this activation knows. If JetStream refuses, another
//     activation wrote: this one is stale, fails its unacknowledged turns
//     with ErrFenced (retryable), drops its memory and ends. This keeps one
//     writer per object even when placement is briefly wrong.
//  7. After the ack the event goes to the projector, which applies it to
//     Badger in batches. Until it reports the version applied, the
//     activation serves those keys from its overlay. The overlay is
//     bounded (Config.OverlayBytesMax): past it the next turn waits for the
//     projector, which re-reads from the log whatever a failed batch lost.
//  8. Exactly-once: a request with an idempotency key (Cause.IdemKey) whose
//     turn writes records its answer in its cause, in the same event as
//     its writes. Before a keyed request runs, the activation looks its key
//     up (overlay, then the snapshot's index); a record within the class's
//     window answers it through the output gate without running the turn,
//     and a record of a different request is ErrIdempotencyKeyReused
//     (idempotency.go).
//
// # Alarms
//
// Storage.SetAlarm, GetAlarm and DeleteAlarm are Durable Objects' single
// alarm; SetAlarmNamed, DeleteAlarmNamed and Alarms add up to
// NamedAlarmsMax named ones. An alarm change is a write of the turn's event
// (history shows it) and reads see it at once, like a key. A class that
// implements Alarmer gets Alarm(ctx, info) as a turn when an alarm is due;
// returning nil clears the alarm in that turn's event, an error or a panic
// retries it with backoff (Class.WithAlarmRetries). Scheduling is the
// alarms package's work: it learns of acknowledged alarm changes through
// Config.Alarms (after the output gate, so nothing uncommitted is ever
// scheduled) and runs fires through Runtime.Alarm, which drops a fire that
// no longer matches the object's alarm.
//
// # WebSockets and hibernation
//
// A class takes WebSockets at /v1/objects/{class}/{name}/ws by implementing
// any of WebSocketConnecter, WebSocketMessager, WebSocketCloser and
// WebSocketErrorer:
//
//	func (r *Room) WebSocketConnect(ctx *objects.Ctx, ws *objects.WebSocket, req *http.Request) error {
//		// nil accepts; objects.Errorf(403, …) refuses the upgrade
//		return ws.SetTags("member", "name:"+req.URL.Query().Get("name"))
//	}
//
//	func (r *Room) WebSocketMessage(ctx *objects.Ctx, ws *objects.WebSocket, m objects.Message) error {
//		if err := ctx.Storage().Put("last", m.Data); err != nil {
//			return err
//		}
//		for _, s := range ctx.Sockets("member") {
//			s.SendMessage(m) // leaves once "last" is durable
//		}
//		return nil
//	}
//
// The gateway holds the connections; the runtime keeps each object's
// sockets (ids, tags, attachments, the auto-response pair) in a hub that
// outlives activations. So an object whose clients sit idle is evicted like
// any other, its sockets stay open, and the next message activates it again
// with Ctx.Sockets returning the same sockets, tags and attachments
// (WebSocket.SetAttachment, at most 2 KiB). Ctx.SetAutoResponse sets a
// request/response pair the gateway answers itself, without waking the
// object; WebSocket.AutoResponseAt says when it last did. The hub forgets
// an object with its last socket (the pair included), so it holds nothing
// for objects without sockets.
//
// WebSocket turns follow the write path like any turn: their writes are
// events (cause via websocket), and Send, SendBytes, SendMessage and Close
// are held in the turn and released with its response, after the event
// holding its writes is acknowledged (step 5), in turn order. A failing turn
// sends nothing. Any turn may send (an RPC method or an Alarm can broadcast
// too). A WebSocket handle is valid for the turn that handed it out; get
// it again from Ctx.Sockets in a later one. Sends never block the object: a
// socket whose client does not keep up is disconnected by the gateway and
// the object gets its WebSocketError turn.
//
// # Activation and eviction
//
// An object is activated on its first request: the snapshot's applied
// version is read, the log is read from there (catch-up), Init runs, then
// the mailbox is served. After IdleTimeout without a request the activation
// is evicted; its storage stays. Past Config.MaxActivations live, the least
// recently used ones are evicted too, each only once idle (no turn running,
// nothing pending or in flight, an empty mailbox), so eviction never cuts a
// turn or an unacknowledged event short. The mailbox is allocated on demand
// and bounded in requests (MailboxLen) and bytes (MailboxBytesMax).
//
// # Checkpoints and retention
//
// After an acknowledged event whose version is a multiple of
// CheckpointConfig.Every (default 1,000), a node goroutine derives the
// object's state at that version from the log (previous checkpoint plus the
// events since, history.Replay) and stores it (log.WriteCheckpoint); the
// ack path only drops a job in a bounded queue. An activation whose
// snapshot is at least that far behind installs the newest checkpoint
// (projector.Install) and reads only the events after it; its SQL file,
// when as far behind, is built from the checkpoint's SQL state the same
// way (sqlstate.go). A class in
// CheckpointConfig.Retain drops its events older than each new checkpoint,
// on a log created with log.Config.AllowRetention.
package objects
