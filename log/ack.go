package log

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// decodeAck reads a publish's answer into ack. The answer to nearly every
// append is the server's plain PubAck, {"stream":"<name>","seq":<n>}
// (nats-server's JSPubAckResponse with only those fields set): that form
// is read here without reflection, which encoding/json spends most of an
// ack's decoding cost on. Any other answer (an error, a duplicate, a
// domain, a batch's fields) goes to encoding/json, so both read the same.
func decodeAck(data []byte, ack *batchAck) error {
	if stream, seq, ok := plainAck(data); ok {
		*ack = batchAck{Stream: stream, Seq: seq}
		return nil
	}
	return json.Unmarshal(data, ack)
}

var (
	ackStreamPrefix = []byte(`{"stream":"`)
	ackSeqInfix     = []byte(`","seq":`)
)

// plainAck parses exactly {"stream":"<name>","seq":<digits>}, with a name
// of printable ASCII that needs no unescaping; ok is false for anything else.
func plainAck(data []byte) (stream string, seq uint64, ok bool) {
	rest, found := bytes.CutPrefix(data, ackStreamPrefix)
	if !found {
		return "", 0, false
	}
	i := bytes.Index(rest, ackSeqInfix)
	if i <= 0 {
		return "", 0, false
	}
	name := rest[:i]
	for _, b := range name {
		// Only printable ASCII without escapes reads the same raw as
		// decoded (stream names are tokens of letters, digits, _ and -).
		if b < 0x20 || b >= 0x7f || b == '"' || b == '\\' {
			return "", 0, false
		}
	}
	digits, found := bytes.CutSuffix(rest[i+len(ackSeqInfix):], []byte("}"))
	if !found || len(digits) == 0 || digits[0] < '1' || digits[0] > '9' {
		return "", 0, false
	}
	for _, d := range digits {
		if d < '0' || d > '9' {
			return "", 0, false
		}
	}
	seq, err := strconv.ParseUint(string(digits), 10, 64)
	if err != nil {
		return "", 0, false
	}
	return string(name), seq, true
}
