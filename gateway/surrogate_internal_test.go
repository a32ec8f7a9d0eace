package gateway

import "testing"

// TestLoneSurrogate: an escaped half of a UTF-16 pair is refused, a whole
// pair and every other escape pass, and truncated input does not panic.
func TestLoneSurrogate(t *testing.T) {
	cases := []struct {
		body string
		at   int
	}{
		{`{"k":"\ud83d\ude00"}`, -1}, // a whole pair: U+1F600
		{`{"k":"\u00e9\n\"\\"}`, -1},
		{`{"k":"\\ud800"}`, -1}, // an escaped backslash, then text
		{`{"k":"\ud800"}`, 6},
		{`{"k":"\udfff"}`, 6},
		{`{"k":"\ud83d\u0041"}`, 6}, // high half, then not a low half
		{`{"k":"x\ud83d`, 7},        // truncated after the high half
		{`{"k":"\ud8`, -1},          // truncated escape: the decoder refuses it
		{`\ud800`, -1},              // outside a string: not JSON, the decoder refuses it
	}
	for _, c := range cases {
		if got := loneSurrogate([]byte(c.body)); got != c.at {
			t.Errorf("loneSurrogate(%s) = %d, want %d", c.body, got, c.at)
		}
	}
}
