package objects

// Limits on what one turn may write, as in Durable Objects. They are checked
// when a handler writes, so an oversize request is refused before anything
// reaches the log. A test asserts that the largest write set plus the event
// envelope fits the log's largest event.
const (
	KeyBytesMax      = 2 << 10   // one key
	ValueBytesMax    = 128 << 10 // one value
	WriteSetBytesMax = 1 << 20   // one turn's writes: keys + values + per-write overhead

	// writeOverheadBytes is what one write costs in the event beyond its key
	// and value (op, lengths, framing). Counting it keeps a turn of many tiny
	// writes inside the envelope too.
	writeOverheadBytes = 16
	// turnOverheadBytes covers a turn's cause and framing.
	turnOverheadBytes = 3 * 1024
	// eventEnvelopeBytes covers an event's fixed fields.
	eventEnvelopeBytes = 1024
)

// maxTurnsPerEvent bounds how many turns one event coalesces (the log's
// decoder refuses more than 4096).
const maxTurnsPerEvent = 4000
